-- order_saga.lua — the shop's order saga (see evs_saga_register_lua in
-- include/evstore_saga.h): once an order is submitted, reserve its stock,
-- authorize the payment, have a carrier schedule the shipment, capture the
-- payment and complete the order.  When a step fails for good, what was done
-- is undone newest first: the shipment cancelled, the authorization voided
-- (or the capture refunded), the stock released, the order cancelled.
--
-- One instance per order: the saga's id is the order's ("order-o17" ->
-- "o17"), and the payment and the shipment carry the same id.  Every
-- command the saga sends carries its correlation id, so the carrier's
-- answer (ShipmentScheduled, sent with the correlation id of the
-- ShipmentCreated it answers) finds its way back.
--
-- settings (evs_saga_register_lua): ship_timeout (seconds a carrier has to
-- schedule a shipment, default 30), saga_timeout (default 300), retry_delay
-- (first retry wait of compensations, default 1).

local s = settings or {}

local function release(d, saga, accepted)
  local t = {}
  for _, i in ipairs(accepted) do
    t[#t + 1] = { command = "ReleaseStock", aggregate_id = d.lines[i].sku, data = { order_id = saga.id } }
  end
  return t
end

local comp_retry = { max_attempts = 3, backoff = "exponential", initial = s.retry_delay or 1, max = 60, jitter = 0.2 }

return {
  start = { event_types = { "OrderSubmitted" }, key = "stream_id" },
  init = function(e)
    return { lines = e.data.lines, total = e.data.total, card = e.data.card, address = e.data.address or "" }
  end,
  timeout = s.saga_timeout or 300,
  steps = {
    -- the order itself: nothing to do, and cancelling it undoes it
    { name = "order",
      compensate = function(d, saga)
        return { command = "CancelOrder", aggregate_id = saga.id, data = { reason = "order saga compensated" } }
      end,
      compensation_retry = comp_retry },
    -- one reservation per line; out of stock is an answer, not an accident: no retry
    { name = "reserve",
      action = function(d, saga)
        local t = {}
        for i, l in ipairs(d.lines) do
          t[i] = { command = "ReserveStock", aggregate_id = l.sku, data = { order_id = saga.id, quantity = l.quantity } }
        end
        return t
      end,
      compensate = release,
      retry = { max_attempts = 1 },
      compensation_retry = comp_retry },
    -- a declined card is final too
    { name = "authorize",
      action = function(d, saga)
        return { command = "AuthorizePayment", aggregate_id = saga.id,
                 data = { order_id = saga.id, amount = d.total, card = d.card } }
      end,
      compensate = function(d, saga) return { command = "VoidAuthorization", aggregate_id = saga.id, data = {} } end,
      retry = { max_attempts = 1 },
      compensation_retry = comp_retry },
    -- the shipment exists at once; the step is done when a carrier has scheduled it
    { name = "ship",
      action = function(d, saga)
        return { command = "CreateShipment", aggregate_id = saga.id, data = { order_id = saga.id, address = d.address } }
      end,
      complete_on = { "ShipmentScheduled" },
      fail_on = { "ShipmentRefused" },
      timeout = s.ship_timeout or 30,
      retry = { max_attempts = 1 },
      compensate = function(d, saga) return { command = "CancelShipment", aggregate_id = saga.id, data = {} } end,
      compensation_retry = comp_retry },
    { name = "capture",
      action = function(d, saga) return { command = "CapturePayment", aggregate_id = saga.id, data = {} } end,
      compensate = function(d, saga)
        return { command = "RefundPayment", aggregate_id = saga.id, data = { amount = d.total } }
      end,
      compensation_retry = comp_retry },
    { name = "complete",
      action = function(d, saga)
        return { command = "CompleteOrder", aggregate_id = saga.id, data = { payment_id = saga.id } }
      end },
  },
}
