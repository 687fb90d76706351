-- product_stock.lua — projection: stock per product (partition = the
-- inventory stream), for the query "stock": on hand, reserved, available.

local function avail(s) s.available = s.on_hand - s.reserved end

return {
  filter = { stream_prefix = "inventory-" },
  init = function() return { on_hand = 0, reserved = 0, available = 0 } end,
  handlers = {
    Restocked = function(s, e) s.sku = e.data.sku; s.on_hand = s.on_hand + e.data.quantity; avail(s) end,
    StockReserved = function(s, e) s.sku = e.data.sku; s.reserved = s.reserved + e.data.quantity; avail(s) end,
    StockReleased = function(s, e) s.sku = e.data.sku; s.reserved = s.reserved - e.data.quantity; avail(s) end,
  },
}
