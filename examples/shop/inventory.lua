-- inventory.lua — stock of one product (streams "inventory-{sku}").
--
-- on_hand counts units in the warehouse; reservations hold units for
-- orders until they are released.  Rule: stock never goes negative — a
-- reservation larger than what is available (on hand minus reserved) is
-- refused, and so is a release that has no reservation behind it.

return {
  schema_version = 1,
  init = function() return { on_hand = 0, reserved = 0, holds = {} } end,

  evolve = {
    Restocked = function(s, e) s.on_hand = s.on_hand + e.data.quantity end,
    StockReserved = function(s, e)
      s.holds[e.data.order_id] = e.data.quantity
      s.reserved = s.reserved + e.data.quantity
    end,
    StockReleased = function(s, e)
      s.reserved = s.reserved - s.holds[e.data.order_id]
      s.holds[e.data.order_id] = nil
    end,
  },

  commands = {
    Restock = {
      fields = { quantity = "integer" },
      decide = function(s, c)
        if c.data.quantity < 1 then return "restock quantity must be at least 1" end
        return { { type = "Restocked", data = { sku = c.aggregate_id, quantity = c.data.quantity } } }
      end,
    },
    ReserveStock = {
      fields = { order_id = "string", quantity = "integer" },
      decide = function(s, c)
        if c.data.quantity < 1 then return "reservation quantity must be at least 1" end
        if s.holds[c.data.order_id] then return "order " .. c.data.order_id .. " already holds stock of " .. c.aggregate_id end
        local available = s.on_hand - s.reserved
        if c.data.quantity > available then
          return "not enough stock of " .. c.aggregate_id .. ": " .. available .. " available, " .. c.data.quantity .. " wanted"
        end
        return { { type = "StockReserved",
                   data = { sku = c.aggregate_id, order_id = c.data.order_id, quantity = c.data.quantity } } }
      end,
    },
    ReleaseStock = {
      fields = { order_id = "string" },
      decide = function(s, c)
        local q = s.holds[c.data.order_id]
        if not q then return "order " .. c.data.order_id .. " holds no stock of " .. c.aggregate_id end
        return { { type = "StockReleased", data = { sku = c.aggregate_id, order_id = c.data.order_id, quantity = q } } }
      end,
    },
  },
}
