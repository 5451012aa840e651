-- Real signups from distinct addresses at a fixed rate: each wrk thread hands out send times
-- INTERVAL_MS apart (the rate asked, divided by the threads), and a connection that has had
-- its answer waits for the next free time. A server slower than the rate shows as a lower
-- rate reached, not as an unbounded queue inside wrk. (wrk's `delay` is not counted in the
-- latency it reports.)
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end

local n = 0
local interval = tonumber(os.getenv("INTERVAL_MS") or "0")
local next_slot = nil
function request()
    n = n + 1
    local body = "email=r" .. tid .. "x" .. n .. "%40example" .. (n % 97) .. ".com&sections=wmd"
    return wrk.format("POST", "/subscribe",
        { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
function delay()
    local now = now_ms()
    if next_slot == nil or next_slot < now - 1000 then
        -- Start, or more than a second behind: do not burst to catch up.
        next_slot = now
    end
    local wait = next_slot - now
    next_slot = next_slot + interval
    if wait < 0 then
        return 0
    end
    return math.floor(wait)
end
