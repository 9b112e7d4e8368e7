-- KEYS: session record, code. ARGV: clock, fresh login required ('1'|'0'), max_age ('' = none),
--       auth_after ('' = none), code binding (JSON), code ttl, the user an id_token_hint names
--       ('' = none; absent from a call of the version before).
-- Stores the code only for a live session that needs no fresh login and is the hinted user's,
-- adding the session's user_id and auth_time to the binding. {'ok', user, last_active_at},
-- {'stale'} or {'none'}.
local rec = redis.call('HMGET', KEYS[1], 'expires_at', 'created_at', 'last_active_at', 'user_id')
local clock = tonumber(ARGV[1])
if not rec[1] or tonumber(rec[1]) <= clock then return {'none'} end
local now, created = math.floor(clock), tonumber(rec[2])
if ARGV[2] == '1' or (ARGV[3] ~= '' and now - created > tonumber(ARGV[3]))
    or (ARGV[4] ~= '' and created < tonumber(ARGV[4]))
    or (ARGV[7] and ARGV[7] ~= '' and ARGV[7] ~= rec[4]) then
  return {'stale'}
end
local binding = cjson.decode(ARGV[5])
binding['user_id'] = rec[4]
binding['auth_time'] = created
redis.call('HSET', KEYS[2], 'data', cjson.encode(binding))
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {'ok', rec[4], rec[3]}
