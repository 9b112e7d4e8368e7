-- KEYS: record, user index, record of the session to evict (= KEYS[1] when none), request mark.
-- ARGV: sid, user, now, expires_at, ttl, client_ip, user_agent, platform, claims, cap, session ttl,
--       the sid to evict ('' = none).
-- {'ok', evicted or ''}, or {'full', least recently active sid, evicted or ''}: at the cap, call again
-- with that session's record declared. An evicted session is 'sid' or 'sid=client,client' (the
-- clients it issued tokens to: back-channel logout).
local rec, index, mark = KEYS[1], KEYS[2], KEYS[4]
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[5])
if redis.call('EXISTS', rec) == 1 then
  return {'ok', redis.call('GET', mark) or ''}  -- this very request, retried by the client
end
-- idle for longer than a session lives: certainly expired
redis.call('ZREMRANGEBYSCORE', index, '-inf', now - tonumber(ARGV[11]))
local evicted = ''
if redis.call('ZCARD', index) >= tonumber(ARGV[10]) then
  local oldest = redis.call('ZRANGE', index, 0, 0)[1]
  if ARGV[12] ~= oldest then return {'full', oldest, ''} end
  local clients = redis.call('HGET', KEYS[3], 'bc')
  if redis.call('DEL', KEYS[3]) == 1 then
    evicted = oldest
    if clients and clients ~= '' then evicted = oldest .. '=' .. string.gsub(clients, ' ', ',') end
    redis.call('SET', mark, evicted, 'EX', 60)
  end
  redis.call('ZREM', index, oldest)
  if redis.call('ZCARD', index) >= tonumber(ARGV[10]) then
    return {'full', redis.call('ZRANGE', index, 0, 0)[1], evicted}
  end
end
redis.call('HSET', rec, 'user_id', ARGV[2], 'created_at', ARGV[3], 'last_active_at', ARGV[3],
  'expires_at', ARGV[4], 'client_ip', ARGV[6], 'user_agent', ARGV[7], 'platform', ARGV[8], 'claims', ARGV[9])
redis.call('EXPIRE', rec, ttl)
redis.call('ZADD', index, now, ARGV[1])
if redis.call('TTL', index) < ttl then redis.call('EXPIRE', index, ttl) end
return {'ok', evicted}
