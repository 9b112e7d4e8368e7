-- KEYS: session record. ARGV: fid, jti, exp, now, most single-token marks per session.
-- Marks one access token revoked until it expires ('j:<jti>'). Past the bound, the token's whole
-- family is ended instead (its field removed, 'y' raised), so a record never holds more than that
-- many marks.
-- {1} marked, {2, latest exp of the family's tokens, tokens minted, index from which they may be
-- alive} its family ended,
-- {0} the session has ended (its tokens are dead already).
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local now, exp = tonumber(ARGV[4]), tonumber(ARGV[3])
local live, marks = live_state(KEYS[1], now)
if marks < tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'j:' .. ARGV[2], ARGV[3])
  return {1}
end
local f = live[ARGV[1]] and decode_family(live[ARGV[1]].text)
if f then redis.call('HDEL', KEYS[1], 'f:' .. ARGV[1]) end
local x = math.max(exp, f and f.x or 0)
raise_ended(KEYS[1], x)
return {2, string.format('%d', x), string.format('%d', f and f.n or 0),
  string.format('%d', f and alive_from(f, now) or -1)}
