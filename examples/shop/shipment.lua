-- shipment.lua — the shipment of an order (streams "shipment-{id}").
-- created -> scheduled (a carrier took it, ScheduleShipment) -> dispatched
-- (with carrier and tracking number) -> delivered; created or scheduled ->
-- cancelled (the order saga's compensation).

return {
  schema_version = 1,
  init = function() return { status = "none" } end,

  evolve = {
    ShipmentCreated = function(s, e) s.status = "created"; s.order_id = e.data.order_id; s.address = e.data.address end,
    ShipmentScheduled = function(s, e) s.status = "scheduled"; s.carrier = e.data.carrier end,
    ShipmentCancelled = function(s, e) s.status = "cancelled" end,
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
    ScheduleShipment = {
      fields = { carrier = "string" },
      decide = function(s, c)
        if s.status ~= "created" then return "only a created shipment can be scheduled (it is " .. s.status .. ")" end
        return { { type = "ShipmentScheduled", data = { order_id = s.order_id, carrier = c.data.carrier } } }
      end,
    },
    CancelShipment = {
      decide = function(s, c)
        if s.status == "cancelled" then return "the shipment is already cancelled" end
        if s.status ~= "created" and s.status ~= "scheduled" then
          return "only a created or scheduled shipment can be cancelled (it is " .. s.status .. ")"
        end
        return { { type = "ShipmentCancelled", data = { order_id = s.order_id } } }
      end,
    },
    DispatchShipment = {
      fields = { carrier = "string", tracking = "string" },
      decide = function(s, c)
        if s.status ~= "created" and s.status ~= "scheduled" then
          return "only a created or scheduled shipment can be dispatched (it is " .. s.status .. ")"
        end
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
