-- wrk script: Lambda Invoke API (RequestResponse) with an empty JSON event.
-- Target: POST /2015-03-31/functions/<name>/invocations (the path is the URL given to wrk).
-- With WISP_BENCH_AMZ_DATE and WISP_BENCH_AUTHORIZATION set (bench/sign.py output for this
-- exact method, URL and body), every request carries that SigV4 signature.
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Amz-Invocation-Type"] = "RequestResponse"

local amz_date = os.getenv("WISP_BENCH_AMZ_DATE")
local authorization = os.getenv("WISP_BENCH_AUTHORIZATION")
if amz_date and authorization and authorization ~= "" then
  wrk.headers["X-Amz-Date"] = amz_date
  wrk.headers["Authorization"] = authorization
end
