-- One connection per wrk thread; each response's latency, by status.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } timespec_t;
int clock_gettime(int clk_id, timespec_t *tp);
]]
local ts = ffi.new("timespec_t")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  body = f:read("*a"); f:close()
  content_type = args[2]
  latencies = {}
  started = 0
end

function request()
  started = now_ms()
  return wrk.format("POST", nil, {["Content-Type"] = content_type}, body)
end

function response(status, headers, body)
  local took = now_ms() - started
  local key = tostring(status)
  latencies[key] = (latencies[key] or "") .. string.format("%.2f ", took)
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("WRK_LATENCY_FILE"), "w"))
  for _, thread in ipairs(threads) do
    local got = thread:get("latencies")
    for status, values in pairs(got) do out:write(status, " ", values, "\n") end
  end
  out:close()
end
