-- KEYS: session record. ARGV: sid, fid, generation, MAC, now.
-- The family of a current refresh token: {user, client_id, scope, family expiry, issued at}, or false.
local now = tonumber(ARGV[5])
local r = redis.call('HMGET', KEYS[1], 'f:' .. ARGV[2], 'user_id', 'expires_at')
if not r[1] or not r[3] or tonumber(r[3]) <= now then return false end
local f = decode_family(r[1])
if f.g ~= tonumber(ARGV[3]) or f.e <= now or refresh_mac(f, ARGV[1], ARGV[2], f.g) ~= ARGV[4] then
  return false
end
return {r[2], f.c, f.s, string.format('%d', f.e), string.format('%d', f.r)}
