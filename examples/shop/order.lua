-- order.lua — the shop's order aggregate (streams "order-{id}").
--
-- Money is never a float: prices arrive as decimal strings ("12.99", "3",
-- "0.5" is refused: two decimals or none) and are kept as integer cents;
-- totals are sums of integers and are shown as decimal strings again.
--
-- Lifecycle: new -> open (CreateOrder) -> submitted (SubmitOrder) -> paid
-- (PayOrder); open or submitted -> cancelled (CancelOrder).  Items can be
-- added and removed while the order is open.  A cancelled order cannot be
-- paid; a paid order cannot be cancelled (refund the payment instead).

local function cents(s)
  local whole, frac = string.match(s, "^(%d+)%.(%d%d)$")
  if not whole then whole = string.match(s, "^(%d+)$"); frac = "00" end
  if not whole or #whole > 12 then return nil end
  return tonumber(whole) * 100 + tonumber(frac)
end

local function decimal(c)
  return string.format("%d.%02d", c // 100, c % 100)
end

return {
  schema_version = 1,
  init = function() return { status = "new", items = {}, total_cents = 0 } end,

  evolve = {
    OrderCreated = function(s, e) s.status = "open"; s.customer = e.data.customer end,
    ItemAdded = function(s, e)
      local it = s.items[e.data.sku] or { quantity = 0, unit_cents = e.data.unit_cents }
      it.quantity = it.quantity + e.data.quantity
      it.unit_cents = e.data.unit_cents
      s.items[e.data.sku] = it
      s.total_cents = s.total_cents + e.data.quantity * e.data.unit_cents
    end,
    ItemRemoved = function(s, e)
      local it = s.items[e.data.sku]
      s.total_cents = s.total_cents - it.quantity * it.unit_cents
      s.items[e.data.sku] = nil
    end,
    OrderSubmitted = function(s, e) s.status = "submitted" end,
    OrderCancelled = function(s, e) s.status = "cancelled" end,
    OrderPaid = function(s, e) s.status = "paid"; s.payment_id = e.data.payment_id end,
  },

  commands = {
    CreateOrder = {
      fields = { customer = "string" },
      decide = function(s, c)
        if s.status ~= "new" then return "order " .. c.aggregate_id .. " already exists" end
        return { { type = "OrderCreated", data = { customer = c.data.customer } } }
      end,
    },
    AddItem = {
      fields = { sku = "string", quantity = "integer", unit_price = "string" },
      decide = function(s, c)
        if s.status ~= "open" then return "items can only be added to an open order (it is " .. s.status .. ")" end
        if c.data.quantity < 1 then return "quantity must be at least 1" end
        local unit = cents(c.data.unit_price)
        if not unit then return "unit_price must be a decimal string like \"12.99\"" end
        return { { type = "ItemAdded", data = { sku = c.data.sku, quantity = c.data.quantity, unit_cents = unit } } }
      end,
    },
    RemoveItem = {
      fields = { sku = "string" },
      decide = function(s, c)
        if s.status ~= "open" then return "items can only be removed from an open order (it is " .. s.status .. ")" end
        if not s.items[c.data.sku] then return "the order has no item " .. c.data.sku end
        return { { type = "ItemRemoved", data = { sku = c.data.sku } } }
      end,
    },
    SubmitOrder = {
      decide = function(s, c)
        if s.status ~= "open" then return "only an open order can be submitted (it is " .. s.status .. ")" end
        if next(s.items) == nil then return "an empty order cannot be submitted" end
        local lines = {}
        for sku, it in pairs(s.items) do
          lines[#lines + 1] = { sku = sku, quantity = it.quantity, unit_cents = it.unit_cents }
        end
        return { { type = "OrderSubmitted",
                   data = { total_cents = s.total_cents, total = decimal(s.total_cents), lines = lines } } }
      end,
    },
    CancelOrder = {
      fields = { reason = "string?" },
      decide = function(s, c)
        if s.status == "cancelled" then return "the order is already cancelled" end
        if s.status == "paid" then return "a paid order cannot be cancelled; refund the payment" end
        if s.status == "new" then return "there is no order " .. c.aggregate_id end
        return { { type = "OrderCancelled", data = { reason = c.data.reason or "" } } }
      end,
    },
    PayOrder = {
      fields = { payment_id = "string", amount = "string" },
      decide = function(s, c)
        if s.status == "cancelled" then return "a cancelled order cannot be paid" end
        if s.status == "paid" then return "the order is already paid" end
        if s.status ~= "submitted" then return "only a submitted order can be paid (it is " .. s.status .. ")" end
        local amount = cents(c.data.amount)
        if amount ~= s.total_cents then
          return "payment of " .. c.data.amount .. " does not match the total " .. decimal(s.total_cents)
        end
        return { { type = "OrderPaid", data = { payment_id = c.data.payment_id, amount_cents = amount } } }
      end,
    },
  },
}
