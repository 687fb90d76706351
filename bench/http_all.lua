-- http_all.lua — wrk script for `evstore serve`: GET /all in 1,000-event
-- pages, each request starting at the next page of the log so the reads
-- walk the whole store instead of rendering one page from a hot cache.
-- EVS_PAGES (default 100) is how many pages the store holds.
--   wrk -t2 -c8 -d5s -s bench/http_all.lua http://127.0.0.1:2113
n = 0  -- global: setup() gives each thread its own start
local pages = tonumber(os.getenv("EVS_PAGES") or "100")

setup = function(thread)
  -- threads start at different pages
  thread:set("n", math.random(0, pages - 1))
end

request = function()
  local from = (n % pages) * 1000 + 1
  n = n + 1
  return wrk.format("GET", "/all?limit=1000&from=" .. from)
end
