-- order-totals.lua — the projection of the README: how many orders were
-- placed and what they add up to, over every stream named order-*.
--
--   evstore projection create --url http://127.0.0.1:2113 order-totals examples/readme/order-totals.lua
--   evstore projection state  --url http://127.0.0.1:2113 order-totals
--     {"orders":2,"total":65.0}
--
-- The shape of a script (filter, partition, init, handlers) is in
-- docs/http-api.md, "Projections (Lua)".
return {
  filter = { stream_prefix = "order-", event_types = { "OrderPlaced" } },
  partition = "none",                  -- one state for all orders
  init = function() return { orders = 0, total = 0 } end,
  handlers = {
    OrderPlaced = function(s, e)
      s.orders = s.orders + 1
      s.total = s.total + tonumber(e.data.total)   -- totals are sent as decimal strings
    end,
  },
}
