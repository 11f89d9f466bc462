package signal

import "github.com/redis/go-redis/v9"

// The Redis broker's scripts. Every cross-node effect is one script: atomic
// and one round trip. ARGV[1] is always the key prefix P.
//
// Keys:
//   - P:room:<room>  HASH id -> member record (memberValue)
//   - P:rooms        SET of rooms with members
//   - P:seq          join order counter
//   - P:sess:<id>    HASH room, node, token, cursor
//   - P:token:<tok>  STRING -> id
//   - P:leases       ZSET id -> lease expiry (ms, Redis clock)
//   - P:inbox:<id>   STREAM of every frame for the peer, MAXLEN inboxLen
//   - P:node:<node>  channel: live frames, takeovers and kicks for a node
//   - P:events       channel: presence events for every node
const luaPrelude = `
local P = ARGV[1]
-- CALLER and BARRIER: the scripts a node waits on set them; a frame for a
-- peer of the caller's node makes barrier() publish the token after it.
local CALLER, BARRIER, HIT = nil, nil, false
local function barrier()
  if HIT then redis.call('PUBLISH', P .. ':node:' .. CALLER, 'b ' .. BARRIER) end
  return HIT
end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function field(v, i)
  local n = 0
  for part in string.gmatch(v, '([^\n]*)\n') do
    n = n + 1
    if n == i then return part end
  end
  return nil
end
local function send(to, node, frame, readAt)
  local sid = redis.call('XADD', P .. ':inbox:' .. to, 'MAXLEN', '` + inboxLenText + `', '*', 'f', frame)
  redis.call('PUBLISH', P .. ':node:' .. node, 'm ' .. to .. ' ' .. sid .. ' ' .. readAt .. ' ' .. frame)
  if node == CALLER then HIT = true end
  return sid
end
-- event tells every node of a presence change: kind, room, id, reason,
-- time (ms) and the peer's info JSON, one per line.
local function event(kind, room, id, reason, t, info)
  redis.call('PUBLISH', P .. ':events', kind .. '\n' .. room .. '\n' .. id .. '\n' .. reason .. '\n' .. t .. '\n' .. info)
end
-- remove drops id from room and tells the others; false when not a member.
local function remove(room, id, reason, frame, t)
  local key = P .. ':room:' .. room
  if redis.call('HDEL', key, id) == 0 then return false end
  local sk = P .. ':sess:' .. id
  local tok = redis.call('HGET', sk, 'token')
  if tok then redis.call('DEL', P .. ':token:' .. tok) end
  redis.call('DEL', sk, P .. ':inbox:' .. id)
  redis.call('ZREM', P .. ':leases', id)
  event('peer-left', room, id, reason, t, '')
  local rest = redis.call('HGETALL', key)
  if #rest == 0 then
    redis.call('SREM', P .. ':rooms', room)
    event('room-closed', room, '', '', t, '')
    return true
  end
  for i = 1, #rest, 2 do
    send(rest[i], field(rest[i + 1], 1), frame, 0)
  end
  return true
end
-- reapRoom removes the members of room whose lease ran out.
local function reapRoom(room, pre, post, n)
  local members = redis.call('HKEYS', P .. ':room:' .. room)
  for _, id in ipairs(members) do
    local exp = redis.call('ZSCORE', P .. ':leases', id)
    if not exp or tonumber(exp) < n then
      remove(room, id, 'timeout', pre .. id .. post, n)
    end
  end
end
`

// inboxLen bounds a peer's stream (XADD MAXLEN, exact): what a peer that
// resumes on another node can get back. It matches the resume queue.
const (
	inboxLen     = ResumeQueue
	inboxLenText = "256"
)

// scriptJoin: ARGV P, room, id, value(after node and seq), max, leaseMs,
// node, token, frameJoined, leftPre, leftPost, t, barrier.
// Returns {"full"} or {"ok" or "okb" (barrier sent), seq, other values...}.
var scriptJoin = redis.NewScript(luaPrelude + `
local room, id, rest, max, lease, node, token = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
local frame, pre, post, t = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
CALLER, BARRIER = node, ARGV[13]
local n = now()
reapRoom(room, pre, post, n)
local key = P .. ':room:' .. room
local others = redis.call('HGETALL', key)
if #others / 2 >= max then return {'full'} end
local seq = redis.call('INCR', P .. ':seq')
redis.call('HSET', key, id, node .. '\n' .. seq .. '\n' .. rest)
redis.call('SADD', P .. ':rooms', room)
redis.call('HSET', P .. ':sess:' .. id, 'room', room, 'node', node, 'token', token, 'cursor', '0')
redis.call('SET', P .. ':token:' .. token, id)
redis.call('ZADD', P .. ':leases', n + lease, id)
local out = {'ok', tostring(seq)}
if #others == 0 then
  event('room-created', room, '', '', t, '')
end
for i = 1, #others, 2 do
  send(others[i], field(others[i + 1], 1), frame, 0)
  table.insert(out, others[i + 1])
end
event('peer-joined', room, id, '', t, string.match(rest, '^[^\n]*\n[^\n]*\n(.*)$'))
if barrier() then out[1] = 'okb' end
return out
`)

// scriptLeave: ARGV P, room, id, reason, frame, t, node, barrier.
// Returns 0 when id was no member, 1 when it left, 2 with a barrier sent.
var scriptLeave = redis.NewScript(luaPrelude + `
CALLER, BARRIER = ARGV[7], ARGV[8]
if not remove(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]) then return 0 end
if barrier() then return 2 end
return 1
`)

// scriptRelay: ARGV P, room, from, to, frame, readAt, node, barrier. To
// empty: every member but from. Returns 0 when to is not a member, 2 when
// a barrier was sent, else 1.
var scriptRelay = redis.NewScript(luaPrelude + `
CALLER, BARRIER = ARGV[7], ARGV[8]
local key = P .. ':room:' .. ARGV[2]
if ARGV[4] ~= '' then
  local v = redis.call('HGET', key, ARGV[4])
  if not v then return 0 end
  send(ARGV[4], field(v, 1), ARGV[5], ARGV[6])
  if barrier() then return 2 end
  return 1
end
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  if all[i] ~= ARGV[3] then send(all[i], field(all[i + 1], 1), ARGV[5], ARGV[6]) end
end
if barrier() then return 2 end
return 1
`)

// scriptDetach: ARGV P, room, id, detached (0/1), leaseMs, cursor. It
// rewrites the member's detached field and, for a detached session, sets
// its lease to end after the grace (it is not renewed any more).
var scriptDetach = redis.NewScript(luaPrelude + `
local key = P .. ':room:' .. ARGV[2]
local v = redis.call('HGET', key, ARGV[3])
if not v then return 0 end
local node, seq, at, _, info = string.match(v, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n(.*)$')
redis.call('HSET', key, ARGV[3], node .. '\n' .. seq .. '\n' .. at .. '\n' .. ARGV[4] .. '\n' .. info)
redis.call('HSET', P .. ':sess:' .. ARGV[3], 'cursor', ARGV[6])
redis.call('ZADD', P .. ':leases', 'XX', now() + tonumber(ARGV[5]), ARGV[3])
return 1
`)

// scriptRenew: ARGV P, leaseMs, then id, cursor pairs. Returns the ids
// whose session is gone (reaped or taken over elsewhere).
var scriptRenew = redis.NewScript(luaPrelude + `
local n, lease, node = now(), tonumber(ARGV[2]), ARGV[3]
local gone = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local sk = P .. ':sess:' .. id
  if redis.call('HGET', sk, 'node') ~= node or not redis.call('ZSCORE', P .. ':leases', id) then
    table.insert(gone, id)
  else
    redis.call('ZADD', P .. ':leases', n + lease, id)
    if ARGV[i + 1] ~= '' then redis.call('HSET', sk, 'cursor', ARGV[i + 1]) end
  end
end
return gone
`)

// scriptReap: ARGV P, leftPre, leftPost. Removes up to 100 members whose
// lease ran out (their node died, or their grace ended with the node).
var scriptReap = redis.NewScript(luaPrelude + `
local n = now()
local ids = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', n, 'LIMIT', 0, 100)
for _, id in ipairs(ids) do
  local room = redis.call('HGET', P .. ':sess:' .. id, 'room')
  if not room or not remove(room, id, 'timeout', ARGV[2] .. id .. ARGV[3], n) then
    redis.call('ZREM', P .. ':leases', id)
    redis.call('DEL', P .. ':sess:' .. id, P .. ':inbox:' .. id)
  end
end
return #ids
`)

// scriptClaim: ARGV P, token, room, node, newToken, leaseMs. Takes the
// session of token over for node. Returns {} when there is none, else
// {id, member value, cursor}.
var scriptClaim = redis.NewScript(luaPrelude + `
local id = redis.call('GET', P .. ':token:' .. ARGV[2])
if not id then return {} end
local sk = P .. ':sess:' .. id
if redis.call('HGET', sk, 'room') ~= ARGV[3] then return {} end
local exp = redis.call('ZSCORE', P .. ':leases', id)
local n = now()
if not exp or tonumber(exp) < n then return {} end
local key = P .. ':room:' .. ARGV[3]
local v = redis.call('HGET', key, id)
if not v then return {} end
local old, seq, at, det, info = string.match(v, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n(.*)$')
v = ARGV[4] .. '\n' .. seq .. '\n' .. at .. '\n' .. det .. '\n' .. info
redis.call('HSET', key, id, v)
redis.call('DEL', P .. ':token:' .. ARGV[2])
redis.call('SET', P .. ':token:' .. ARGV[5], id)
redis.call('HSET', sk, 'node', ARGV[4], 'token', ARGV[5])
redis.call('ZADD', P .. ':leases', n + tonumber(ARGV[6]), id)
if old ~= ARGV[4] then
  redis.call('PUBLISH', P .. ':node:' .. old, 't ' .. id)
end
return {id, v, redis.call('HGET', sk, 'cursor') or '0'}
`)

// scriptToken: ARGV P, id, token: the session's resume token rotated on
// this node.
var scriptToken = redis.NewScript(luaPrelude + `
local sk = P .. ':sess:' .. ARGV[2]
local old = redis.call('HGET', sk, 'token')
if not old then return 0 end
redis.call('DEL', P .. ':token:' .. old)
redis.call('HSET', sk, 'token', ARGV[3])
redis.call('SET', P .. ':token:' .. ARGV[3], ARGV[2])
return 1
`)

// scriptKick: ARGV P, room, id. Returns the number of nodes that got the
// kick (0: no member, or its node is gone).
var scriptKick = redis.NewScript(luaPrelude + `
local v = redis.call('HGET', P .. ':room:' .. ARGV[2], ARGV[3])
if not v then return -1 end
return redis.call('PUBLISH', P .. ':node:' .. field(v, 1), 'k ' .. ARGV[2] .. ' ' .. ARGV[3])
`)

// scriptRestore: ARGV P, leaseMs, then room, id, value, token quadruples:
// after an outage, recreate what Redis lost of this node's sessions (a
// restart without persistence loses everything). Existing records stay.
var scriptRestore = redis.NewScript(luaPrelude + `
local n, lease = now(), tonumber(ARGV[2])
for i = 3, #ARGV, 4 do
  local room, id, v, tok = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local sk = P .. ':sess:' .. id
  if redis.call('EXISTS', sk) == 0 then
    redis.call('HSET', P .. ':room:' .. room, id, v)
    redis.call('SADD', P .. ':rooms', room)
    redis.call('HSET', sk, 'room', room, 'node', field(v, 1), 'token', tok, 'cursor', '0')
    redis.call('SET', P .. ':token:' .. tok, id)
    redis.call('ZADD', P .. ':leases', n + lease, id)
  end
end
return 1
`)
