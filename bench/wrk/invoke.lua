-- wrk script: Lambda Invoke API (RequestResponse) with an empty JSON event.
-- Target: POST /2015-03-31/functions/<name>/invocations (the path is the URL given to wrk).
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Amz-Invocation-Type"] = "RequestResponse"

-- Count non-2xx answers and function errors so a broken run cannot pass as a fast one.
local errors = 0
response = function(status, headers, body)
  if status < 200 or status > 299 or headers["X-Amz-Function-Error"] ~= nil then
    errors = errors + 1
  end
end
