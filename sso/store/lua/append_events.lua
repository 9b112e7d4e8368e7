-- KEYS: the event log, this call's mark (its slot). ARGV: channel, retention seconds, entry cap,
-- events (JSON objects)...
-- Per event: append it to the log, then publish it with the entry id as "id", so a
-- subscriber that gets the message can always find the entry. The log keeps at least
-- the retention (MINID ~ on Redis' own clock, which also makes the ids) and at most
-- about the cap (MAXLEN ~). Returns the ids. The mark makes a rerun of the same call (redis-py's
-- retry after a reply that never arrived) return the first run's ids instead of appending again.
local done = redis.call('GET', KEYS[2])
if done then
  local ids = {}
  for id in string.gmatch(done, '[^,]+') do ids[#ids + 1] = id end
  return ids
end
redis.replicate_commands()  -- TIME before writes: needed before Redis 7, a no-op since
local t = redis.call('TIME')
local retention = tonumber(ARGV[2])
local cutoff = string.format('%d', (tonumber(t[1]) - retention) * 1000)
local ids = {}
for i = 4, #ARGV do
  local id = redis.call('XADD', KEYS[1], 'MINID', '~', cutoff, '*', 'event', ARGV[i])
  redis.call('PUBLISH', ARGV[1], '{"id":"' .. id .. '",' .. string.sub(ARGV[i], 2))
  ids[#ids + 1] = id
end
redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[3])
redis.call('EXPIRE', KEYS[1], retention + 60)
redis.call('SET', KEYS[2], table.concat(ids, ','), 'EX', 60)
return ids
