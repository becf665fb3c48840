-- wrk script: POST /v1/authorize with the bodies of an NDJSON file (one per
-- line, e.g. from `cedargate-admin generate --requests`), cycled from a
-- random start:  wrk ... -s scripts/authorize-mix.lua URL -- FILE
local bodies = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  i = math.random(#bodies)
end
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/authorize", {["Content-Type"] = "application/json"}, bodies[i])
end
