-- shipment.lua — the shipment of an order (streams "shipment-{id}").
-- created -> dispatched (with carrier and tracking number) -> delivered.

return {
  schema_version = 1,
  init = function() return { status = "none" } end,

  evolve = {
    ShipmentCreated = function(s, e) s.status = "created"; s.order_id = e.data.order_id; s.address = e.data.address end,
    ShipmentDispatched = function(s, e) s.status = "dispatched"; s.carrier = e.data.carrier; s.tracking = e.data.tracking end,
    ShipmentDelivered = function(s, e) s.status = "delivered" end,
  },

  commands = {
    CreateShipment = {
      fields = { order_id = "string", address = "string" },
      decide = function(s, c)
        if s.status ~= "none" then return "shipment " .. c.aggregate_id .. " already exists" end
        return { { type = "ShipmentCreated", data = { order_id = c.data.order_id, address = c.data.address } } }
      end,
    },
    DispatchShipment = {
      fields = { carrier = "string", tracking = "string" },
      decide = function(s, c)
        if s.status ~= "created" then return "only a created shipment can be dispatched (it is " .. s.status .. ")" end
        return { { type = "ShipmentDispatched", data = { order_id = s.order_id, carrier = c.data.carrier,
                                                         tracking = c.data.tracking } } }
      end,
    },
    DeliverShipment = {
      decide = function(s, c)
        if s.status ~= "dispatched" then return "only a dispatched shipment can be delivered (it is " .. s.status .. ")" end
        return { { type = "ShipmentDelivered", data = { order_id = s.order_id } } }
      end,
    },
  },
}
