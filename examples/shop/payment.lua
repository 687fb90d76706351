-- payment.lua — a payment for an order (streams "payment-{id}").
--
-- authorized -> captured (in parts, never beyond the authorization) ->
-- refunded (in parts, never beyond what was captured); an authorization
-- with nothing captured can be voided (the order saga's compensation).
-- Amounts are decimal strings kept as integer cents.
--
-- Test cards, as payment gateways have them: a card token "tok_declined"
-- is declined at authorization; "tok_void_fails" authorizes, but the
-- gateway refuses to void it (the shop's injected compensation failure).  That a cancelled order is not paid is the
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
      s.status = "authorized"; s.order_id = e.data.order_id; s.authorized = e.data.amount_cents; s.card = e.data.card
    end,
    PaymentVoided = function(s, e) s.status = "voided" end,
    PaymentCaptured = function(s, e) s.status = "captured"; s.captured = s.captured + e.data.amount_cents end,
    PaymentRefunded = function(s, e) s.refunded = s.refunded + e.data.amount_cents end,
  },

  commands = {
    AuthorizePayment = {
      fields = { order_id = "string", amount = "string", card = "string?" },
      decide = function(s, c)
        if s.status ~= "none" then return "payment " .. c.aggregate_id .. " already exists" end
        local a = cents(c.data.amount)
        if not a or a == 0 then return "amount must be a positive decimal string like \"12.99\"" end
        if c.data.card == "tok_declined" then return "card declined" end
        return { { type = "PaymentAuthorized", data = { order_id = c.data.order_id, amount_cents = a, card = c.data.card } } }
      end,
    },
    VoidAuthorization = {
      decide = function(s, c)
        if s.status == "voided" then return "the authorization is already void" end
        if s.status ~= "authorized" then return "payment " .. c.aggregate_id .. " has no authorization to void" end
        if s.captured > s.refunded then return "captured money must be refunded before the authorization is voided" end
        if s.card == "tok_void_fails" then return "the gateway refused to void the authorization" end
        return { { type = "PaymentVoided", data = { order_id = s.order_id, amount_cents = s.authorized - s.captured } } }
      end,
    },
    CapturePayment = {
      fields = { amount = "string?" },
      decide = function(s, c)
        if s.status == "none" then return "payment " .. c.aggregate_id .. " was never authorized" end
        if s.status == "voided" then return "payment " .. c.aggregate_id .. " was voided" end
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
