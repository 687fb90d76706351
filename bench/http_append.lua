-- http_append.lua — wrk script for `evstore serve`: one-event appends,
-- POST /streams/order-<n> with n uniform over EVS_STREAMS (default 10,000)
-- streams, carrying the same kind of event as bench_store's W2 (~217-byte
-- order as data, ~109-byte metadata; a pool of 256 generated orders).
-- Expected version: any (wrk cannot keep per-stream versions across
-- connections; the store checks the version either way).
--   wrk -t2 -c8 -d4s -s bench/http_append.lua http://127.0.0.1:2113
local streams = tonumber(os.getenv("EVS_STREAMS") or "10000")
local types = {"OrderPlaced", "OrderPaid", "OrderPacked", "OrderShipped", "OrderDelivered"}
local names = {"Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra",
               "Barbara Liskov", "Donald Knuth", "Frances Allen", "Ken Thompson"}
local pool = {}
local n = 0

local function hex(k) local t = {} for i = 1, k do t[i] = string.format("%x", math.random(0, 15)) end return table.concat(t) end

setup = function(thread)
  thread:set("seed", math.random(1, 1000000))
end

init = function(args)
  math.randomseed(seed or 1)
  for i = 1, 256 do
    local data = string.format(
      '{"order_id":"ord-%06d","customer":{"id":"cust-%05d","name":"%s"},"items":[{"sku":"SKU-%04d","qty":%d,"price":%d.%02d},' ..
      '{"sku":"SKU-%04d","qty":%d,"price":%d.%02d}],"total":%d.%02d,"currency":"EUR","paid":%s}',
      math.random(0, 999999), math.random(0, 99999), names[math.random(1, 8)], math.random(0, 9999), math.random(1, 9),
      math.random(0, 499), math.random(0, 99), math.random(0, 9999), math.random(1, 9), math.random(0, 499),
      math.random(0, 99), math.random(0, 4999), math.random(0, 99), math.random(0, 1) == 1 and "true" or "false")
    local meta = string.format('{"correlation":"%s-%s-7%s-8%s-%s","user":"user-%04d","source":"web","ip":"10.%d.%d.%d"}',
      hex(8), hex(4), hex(3), hex(3), hex(12), math.random(0, 9999), math.random(0, 255), math.random(0, 255), math.random(0, 255))
    pool[i] = meta and data and {data = data, meta = meta}
  end
end

request = function()
  n = n + 1
  local e = pool[math.random(1, 256)]
  local body = '{"event_type":"' .. types[n % 5 + 1] .. '","data":' .. e.data .. ',"metadata":' .. e.meta .. '}'
  return wrk.format("POST", "/streams/order-" .. math.random(0, streams - 1),
                    {["Content-Type"] = "application/json"}, body)
end
