-- KEYS: user index, then the records of the sids in ARGV, in the same order.
-- Returns {sid, {values in SESSION_FIELDS order}} pairs; index members whose record is gone are dropped.
local out = {}
for i = 2, #KEYS do
  local values = redis.call('HMGET', KEYS[i], 'user_id', 'created_at', 'last_active_at', 'expires_at',
    'client_ip', 'user_agent', 'platform', 'claims')
  if values[1] then
    table.insert(out, ARGV[i - 1])
    table.insert(out, values)
  else
    redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return out
