-- KEYS: record, user index. ARGV: at, interval, sid. One debounced activity write; never
-- resurrects an ended session, never moves activity backwards.
local last = redis.call('HGET', KEYS[1], 'last_active_at')
if not last then return 0 end
local at = tonumber(ARGV[1])
if at - tonumber(last) < tonumber(ARGV[2]) or at <= tonumber(last) then return 0 end
redis.call('HSET', KEYS[1], 'last_active_at', ARGV[1])
redis.call('ZADD', KEYS[2], 'XX', 'GT', at, ARGV[3])
return 1
