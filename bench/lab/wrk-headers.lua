-- wrk script of the labs: request headers from the environment, nothing else
-- (the bench's own, wrk-load.lua, also prints the whole latency histogram).
-- BENCH_WRK_HEADERS: "name: value" lines, sent with every request.
for line in (os.getenv("BENCH_WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
