-- payment.lua — a payment for an order (streams "payment-{id}").
--
-- authorized -> captured (in parts, never beyond the authorization) ->
-- refunded (in parts, never beyond what was captured).  Amounts are decimal
-- strings kept as integer cents.  That a cancelled order is not paid is the
-- order's rule (order.lua, PayOrder): a payment does not know its order's
-- state, the order does.

local function cents(s)
  local whole, frac = string.match(s, "^(%d+)%.(%d%d)$")
  if not whole then whole = string.match(s, "^(%d+)$"); frac = "00" end
  if not whole or #whole > 12 then return nil end
  return tonumber(whole) * 100 + tonumber(frac)
end

return {
  schema_version = 1,
  init = function() return { status = "none", authorized = 0, captured = 0, refunded = 0 } end,

  evolve = {
    PaymentAuthorized = function(s, e)
      s.status = "authorized"; s.order_id = e.data.order_id; s.authorized = e.data.amount_cents
    end,
    PaymentCaptured = function(s, e) s.status = "captured"; s.captured = s.captured + e.data.amount_cents end,
    PaymentRefunded = function(s, e) s.refunded = s.refunded + e.data.amount_cents end,
  },

  commands = {
    AuthorizePayment = {
      fields = { order_id = "string", amount = "string" },
      decide = function(s, c)
        if s.status ~= "none" then return "payment " .. c.aggregate_id .. " already exists" end
        local a = cents(c.data.amount)
        if not a or a == 0 then return "amount must be a positive decimal string like \"12.99\"" end
        return { { type = "PaymentAuthorized", data = { order_id = c.data.order_id, amount_cents = a } } }
      end,
    },
    CapturePayment = {
      fields = { amount = "string?" },
      decide = function(s, c)
        if s.status == "none" then return "payment " .. c.aggregate_id .. " was never authorized" end
        local left = s.authorized - s.captured
        local a = c.data.amount and cents(c.data.amount) or left
        if not a or a == 0 then return "amount must be a positive decimal string" end
        if a > left then return "cannot capture more than the " .. left .. " cents still authorized" end
        return { { type = "PaymentCaptured", data = { order_id = s.order_id, amount_cents = a } } }
      end,
    },
    RefundPayment = {
      fields = { amount = "string" },
      decide = function(s, c)
        local a = cents(c.data.amount)
        if not a or a == 0 then return "amount must be a positive decimal string" end
        if a > s.captured - s.refunded then
          return "cannot refund more than the " .. (s.captured - s.refunded) .. " cents captured and not refunded"
        end
        return { { type = "PaymentRefunded", data = { order_id = s.order_id, amount_cents = a } } }
      end,
    },
  },
}
