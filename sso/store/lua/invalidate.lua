-- KEYS: user index, request mark, then the records of the sessions to end.
-- ARGV: user, mode ('some' | 'all'), n, the n sids of KEYS[3..], then (mode 'all') the sids kept.
-- Ends the listed sessions of the user: each record, with every family and mark in it, is one key.
-- 'all' first checks that the index holds no session the caller did not declare (one created
-- since it read the index): then it changes nothing and answers {'changed'}.
-- The answer is kept under the request mark for a minute, so a retry of this request (a reply
-- lost to a timeout) gets the same answer instead of an empty one. Each ended session is answered
-- as 'sid' or 'sid=client,client' (the clients it issued tokens to: back-channel logout).
local index, mark = KEYS[1], KEYS[2]
local done = redis.call('GET', mark)
if done then
  local ended = {'ended'}
  for sid in string.gmatch(done, '%S+') do table.insert(ended, sid) end
  return ended
end
local user, n = ARGV[1], tonumber(ARGV[3])
if ARGV[2] == 'all' then
  local declared = {}
  for i = 4, #ARGV do declared[ARGV[i]] = true end
  for _, sid in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    if not declared[sid] then return {'changed'} end
  end
end
local ended = {'ended'}
for i = 1, n do
  local owner = redis.call('HMGET', KEYS[2 + i], 'user_id', 'bc')
  if owner[1] == user then
    redis.call('DEL', KEYS[2 + i])
    local entry = ARGV[3 + i]
    if owner[2] and owner[2] ~= '' then entry = entry .. '=' .. string.gsub(owner[2], ' ', ',') end
    table.insert(ended, entry)
  end
  redis.call('ZREM', index, ARGV[3 + i])
end
redis.call('SET', mark, table.concat(ended, ' ', 2), 'EX', 60)
return ended
