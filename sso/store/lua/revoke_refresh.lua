-- KEYS: session record. ARGV: sid, fid, generation, MAC, client_id ('' = any: a service caller), now.
-- RFC 7009 §2.1: revoking a refresh token (current or spent) ends its family.
-- {1, user, latest exp of its access tokens, tokens minted, index from which they may be alive}
-- revoked, {0} unknown,
-- {-1} owned by another client (left alive).
local r = redis.call('HMGET', KEYS[1], 'f:' .. ARGV[2], 'user_id')
if not r[1] then return {0} end
local f = decode_family(r[1])
local gen = tonumber(ARGV[3])
if gen > f.g or refresh_mac(f, ARGV[1], ARGV[2], gen) ~= ARGV[4] then return {0} end
if ARGV[5] ~= '' and f.c ~= ARGV[5] then return {-1} end
local ended = end_family(KEYS[1], ARGV[2], f, tonumber(ARGV[6]))
return {1, r[2], ended[1], ended[2], ended[3]}
