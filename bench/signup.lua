-- Real signups from distinct addresses, paced: each connection sends one request every
-- DELAY_MS milliseconds (wrk excludes the pause from the latency it reports).
local threads = {}
function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end
local n = 0
local pause = tonumber(os.getenv("DELAY_MS") or "0")
function request()
    n = n + 1
    local body = "email=r" .. tid .. "x" .. n .. "%40example" .. (n % 97) .. ".com&sections=wmd"
    return wrk.format("POST", "/subscribe",
        { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
function delay()
    return pause
end
