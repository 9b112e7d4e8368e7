-- KEYS: code. ARGV: ttl kept. Uses a code up without issuing anything (its bindings did not match).
if redis.call('HSETNX', KEYS[1], 'issued', '{"burned":true}') == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return 1
