-- KEYS: the window's counter. ARGV: ttl. One more failure; the count so far.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
