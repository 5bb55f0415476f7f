-- wrk script of the bench (bench/lib/wrk.mjs): request headers from the
-- environment, and at the end one machine-readable line with the counts and
-- the whole latency histogram (microseconds), so the bench can merge slices
-- into exact percentiles as it does for autocannon.
-- BENCH_WRK_HEADERS: "name: value" lines, sent with every request.
for line in (os.getenv("BENCH_WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

done = function(summary, latency, requests)
  local e = summary.errors
  local hist = {}
  for i = 1, #latency do
    local us, count = latency(i)
    hist[#hist + 1] = string.format("[%d,%d]", us, count)
  end
  io.write(string.format(
    'BENCH_WRK_RESULT {"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latencyUs":[%s]}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout, table.concat(hist, ",")))
end
