-- KEYS: record, user index, request mark, then the records of the sids in ARGV[14..].
-- ARGV: sid, user, now, expires_at, ttl, client_ip, user_agent, platform, claims, cap, session ttl,
--       index score (now, to the millisecond), force ('1' = create even if still at the cap), then
--       the sids of the index as the last 'full' answer listed them.
-- Only live sessions count toward the cap. At the cap the first call answers {'full', evicted, every
-- sid of the index}; the caller declares their records and calls again. Members whose record is gone
-- (it expired on its fixed expires_at while the index, scored by activity, kept them) are dropped,
-- and as many live ones are evicted as it takes to make room (the whole surplus at once when the cap
-- was lowered), least recently active first: by last activity to the second, then the oldest
-- created, then the index score (the creation to the millisecond, until the session is next used),
-- then the sid. A member the caller did not declare was created since the last answer and counts
-- as live; if such members still fill the cap the answer is 'full' again, listing the index anew,
-- unless force.
-- {'ok', evicted} or {'full', evicted, sids...}: evicted is every session this request ended, space
-- separated, each 'sid' or 'sid=client,client' (the clients it issued tokens to: back-channel
-- logout). It is kept under the request mark, so a retried call reports it too.
local rec, index, mark = KEYS[1], KEYS[2], KEYS[3]
local user, now, cap = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[10])
if redis.call('EXISTS', rec) == 1 then
  return {'ok', redis.call('GET', mark) or ''}  -- this very request, retried by the client
end
-- idle for longer than a session lives: certainly expired
redis.call('ZREMRANGEBYSCORE', index, '-inf', now - tonumber(ARGV[11]))
local count = redis.call('ZCARD', index)
if count >= cap then
  local surplus = count - cap + 1
  if #KEYS > 3 then  -- the records of the index as the last 'full' answer listed it
    local declared, live = {}, {}
    for i = 4, #KEYS do declared[ARGV[10 + i]] = i end
    local members = redis.call('ZRANGE', index, 0, -1, 'WITHSCORES')
    for i = 1, #members, 2 do
      local sid, at = members[i], tonumber(members[i + 1])
      if declared[sid] then
        local key = KEYS[declared[sid]]
        local owner = redis.call('HMGET', key, 'user_id', 'created_at')
        if owner[1] == user then
          table.insert(live, {sid = sid, key = key, at = at, second = math.floor(at), created = tonumber(owner[2])})
        else
          redis.call('ZREM', index, sid)  -- its record is gone: it counts no more
          surplus = surplus - 1
        end
      end
    end
    if surplus > 0 and #live > 0 then
      table.sort(live, function(a, b)
        if a.second ~= b.second then return a.second < b.second end
        if a.created ~= b.created then return a.created < b.created end
        if a.at ~= b.at then return a.at < b.at end
        return a.sid < b.sid
      end)
      local ended = {redis.call('GET', mark) or nil}
      for i = 1, math.min(surplus, #live) do
        local victim, key = live[i], live[i].key
        local entry, clients = victim.sid, redis.call('HGET', key, 'bc')
        if clients and clients ~= '' then entry = entry .. '=' .. string.gsub(clients, ' ', ',') end
        redis.call('DEL', key)
        redis.call('ZREM', index, victim.sid)
        table.insert(ended, entry)
        surplus = surplus - 1
      end
      redis.call('SET', mark, table.concat(ended, ' '), 'EX', 60)
    end
  end
  if surplus > 0 and ARGV[13] ~= '1' then
    local answer = {'full', redis.call('GET', mark) or ''}
    for _, sid in ipairs(redis.call('ZRANGE', index, 0, -1)) do table.insert(answer, sid) end
    return answer
  end
end
redis.call('HSET', rec, 'user_id', ARGV[2], 'created_at', ARGV[3], 'last_active_at', ARGV[3],
  'expires_at', ARGV[4], 'client_ip', ARGV[6], 'user_agent', ARGV[7], 'platform', ARGV[8], 'claims', ARGV[9])
redis.call('EXPIRE', rec, tonumber(ARGV[5]))
redis.call('ZADD', index, ARGV[12], ARGV[1])
if redis.call('TTL', index) < tonumber(ARGV[5]) then redis.call('EXPIRE', index, ARGV[5]) end
return {'ok', redis.call('GET', mark) or ''}
