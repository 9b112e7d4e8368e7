-- KEYS: code, session record.
-- ARGV: marker (JSON {fid, x}), ttl kept after use, now, fid, sid, client_id, scope,
--       family max expiry, family MAC key (hex), access token max expiry, families per session.
-- Marks the code used and starts its refresh family in one step. A second redemption of the code
-- ends the family the first one started (RFC 6749 §4.1.2); the same marker again is a client
-- library retrying this very redemption and gets the same answer.
-- {'ok', session expires_at, auth_time, family expiry, MAC of generation 0, fid of a family ended
-- for the cap or '', its latest exp, its tokens minted, the index from which they may be alive}
-- | {'used', fid ended or '', latest exp of its access tokens, tokens minted, index from which they
-- may be alive} | {'missing'} | {'ended'}
-- The first access token's exp (and so the family's x) is min(access token max expiry, session
-- expires_at, family expiry): the caller mints it with the same clamp.
local code, rec = KEYS[1], KEYS[2]
local now, fid, sid = tonumber(ARGV[3]), ARGV[4], ARGV[5]
if redis.call('EXISTS', code) == 0 then return {'missing'} end
local issued = redis.call('HGET', code, 'issued')
if issued and issued ~= ARGV[1] then
  local first = cjson.decode(issued)
  if not first.fid then return {'used', '', '0', '0', '0'} end
  local fam = redis.call('HGET', rec, 'f:' .. first.fid)
  if fam then
    local ended = end_family(rec, first.fid, decode_family(fam), now)
    return {'used', first.fid, ended[1], ended[2], ended[3]}
  end
  if first.x > now and redis.call('EXISTS', rec) == 1 then
    raise_ended(rec, first.x)  -- family already gone (its tokens are covered); its first token too
  end
  return {'used', first.fid, string.format('%d', first.x), '1', '0'}
end
local sess = redis.call('HMGET', rec, 'expires_at', 'created_at')
if issued then
  local fam = redis.call('HGET', rec, 'f:' .. fid)
  if not fam or not sess[1] then return {'ended'} end
  local f = decode_family(fam)
  return {'ok', sess[1], sess[2], string.format('%d', f.e), refresh_mac(f, sid, fid, 0), '', '0', '0'}
end
if not sess[1] or tonumber(sess[1]) <= now then
  redis.call('HSET', code, 'issued', ARGV[1])
  redis.call('EXPIRE', code, ARGV[2])
  return {'ended'}
end
local live = live_state(rec, now)
redis.call('HSET', code, 'issued', ARGV[1])
redis.call('EXPIRE', code, ARGV[2])
local count, oldest, oldest_fam = 0, nil, nil
for id, f in pairs(live) do
  count = count + 1
  if oldest_fam == nil or f.t < oldest_fam.t or (f.t == oldest_fam.t and id < oldest) then
    oldest, oldest_fam = id, f
  end
end
local dropped, ended = '', {'0', '0', '0'}
if count >= tonumber(ARGV[11]) then
  ended = end_family(rec, oldest, decode_family(oldest_fam.text), now)
  dropped = oldest
end
local sess_exp = tonumber(sess[1])
local fam_exp = math.min(tonumber(ARGV[8]), sess_exp)
local fam = {c = ARGV[6], s = ARGV[7], g = 0, k = ARGV[9], e = fam_exp, t = now, r = now, n = 1,
  x = math.min(tonumber(ARGV[10]), fam_exp), q = string.rep('0', 24), qn = 0}
fam.h = first_checkpoints(fam.x)
redis.call('HSET', rec, 'f:' .. fid, encode_family(fam))
-- the clients this session issued tokens to, for back-channel logout when it ends (bounded by SSO_CLIENTS)
local clients = redis.call('HGET', rec, 'bc') or ''
if not string.find(' ' .. clients .. ' ', ' ' .. ARGV[6] .. ' ', 1, true) then
  redis.call('HSET', rec, 'bc', (clients == '' and '' or clients .. ' ') .. ARGV[6])
end
return {'ok', sess[1], sess[2], string.format('%d', fam.e), refresh_mac(fam, sid, fid, 0), dropped, ended[1],
  ended[2], ended[3]}
