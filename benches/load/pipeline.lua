-- wrk script: sends DEPTH requests for /health/live in one write (HTTP/1.1 pipelining).
-- Usage: wrk ... -s pipeline.lua URL -- DEPTH   (DEPTH defaults to 16)
-- wrk counts every response, so Requests/sec counts requests, not batches.

local batch

init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil, "/health/live")
   end
   batch = table.concat(r)
end

request = function()
   return batch
end
