-- wrk script for bench/serving.py: every request POSTs the same JSON body, read once per thread
-- from the file named after `--` on wrk's command line:
--   wrk -t2 -c8 -d10s --latency -s bench/wrk_post.lua http://127.0.0.1:8080/invocations -- body.json
-- No response() callback: a Lua call per response would slow wrk down on a 2-core machine. wrk
-- still counts non-2xx answers ("Non-2xx or 3xx responses"), which bench/serving.py reports.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  local file = assert(io.open(args[1], "rb"), "usage: ... -s wrk_post.lua URL -- BODY_FILE")
  wrk.body = file:read("*a")
  file:close()
end
