-- order_summary.lua — projection: one summary per order (partition = the
-- order's stream), for the query "orders": customer, status, item count and
-- the total as an exact decimal string.

local function decimal(c)
  return string.format("%d.%02d", c // 100, c % 100)
end

local function retotal(s)
  local n, t = 0, 0
  for _, it in pairs(s.lines) do n = n + it.quantity; t = t + it.quantity * it.unit_cents end
  s.items = n
  s.total_cents = t
  s.total = decimal(t)
end

return {
  filter = { stream_prefix = "order-" },
  init = function() return { status = "new", items = 0, total_cents = 0, total = "0.00", lines = {} } end,
  handlers = {
    OrderCreated = function(s, e) s.status = "open"; s.customer = e.data.customer end,
    ItemAdded = function(s, e)
      local it = s.lines[e.data.sku] or { quantity = 0 }
      it.quantity = it.quantity + e.data.quantity
      it.unit_cents = e.data.unit_cents
      s.lines[e.data.sku] = it
      retotal(s)
    end,
    ItemRemoved = function(s, e) s.lines[e.data.sku] = nil; retotal(s) end,
    OrderSubmitted = function(s, e) s.status = "submitted" end,
    OrderCancelled = function(s, e) s.status = "cancelled" end,
    OrderPaid = function(s, e) s.status = "paid" end,
  },
}
