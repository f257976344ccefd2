// gen.mjs writes vectors.json, the cross-implementation vectors that
// codec/envelope_test.go checks Go against. It uses only Node's own crypto
// module (OpenSSL), so the expected bytes do not come from the Go code under
// test. Tests never run it; rerun by hand only when the vectors must change:
//
//	cd codec/testdata/envelope && node gen.mjs > vectors.json
//
// Generated with node v20.20.2. Every input is fixed: private keys and
// nonces are SHA-256 of a label, so a rerun prints the same file.
//
// "hikma" vectors follow the Hikma hub/mobile pairing (reference
// hikma-sync.md §2.2, §2.3): X25519, HKDF-SHA256 with salt
// "hikma-health-pairing-v1" and info hub_pub‖client_pub, AES-256-GCM with
// the direction as AAD, blob = base64url-no-pad(nonce‖ciphertext‖tag).
//
// "native" vectors follow clinicsync's replay-protected channel
// (codec.Sealer/codec.Opener): per-direction keys
// HKDF-SHA256(ikm=session key, salt=empty, info="clinicsync v1 c2s"|"clinicsync v1 s2c"),
// nonce = 4 zero bytes ‖ 8-byte big-endian counter, same blob layout.

import crypto from 'node:crypto';

const sha256 = (s) => crypto.createHash('sha256').update(s).digest();
const hex = (b) => Buffer.from(b).toString('hex');
const b64u = (b) => Buffer.from(b).toString('base64url'); // no padding

// X25519 private key from 32 raw bytes: PKCS#8 DER prefix for OID 1.3.101.110.
const pkcs8Prefix = Buffer.from('302e020100300506032b656e04220420', 'hex');
function x25519Private(raw) {
  return crypto.createPrivateKey({ key: Buffer.concat([pkcs8Prefix, raw]), format: 'der', type: 'pkcs8' });
}
function rawPublic(priv) {
  return Buffer.from(crypto.createPublicKey(priv).export({ format: 'jwk' }).x, 'base64url');
}
function publicFromRaw(raw) {
  return crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64u(raw) }, format: 'jwk' });
}

function gcmSeal(key, nonce, aad, plaintext) {
  const c = crypto.createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
  c.setAAD(Buffer.from(aad, 'ascii'));
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return b64u(Buffer.concat([nonce, ct, c.getAuthTag()]));
}

const hubPrivRaw = sha256('clinicsync test vector: hub private key');
const clientPrivRaw = sha256('clinicsync test vector: client private key');
const hubPriv = x25519Private(hubPrivRaw);
const clientPriv = x25519Private(clientPrivRaw);
const hubPub = rawPublic(hubPriv);
const clientPub = rawPublic(clientPriv);

const sharedHub = crypto.diffieHellman({ privateKey: hubPriv, publicKey: publicFromRaw(clientPub) });
const sharedClient = crypto.diffieHellman({ privateKey: clientPriv, publicKey: publicFromRaw(hubPub) });
if (!sharedHub.equals(sharedClient)) throw new Error('X25519 sides disagree');

const sessionKey = Buffer.from(crypto.hkdfSync('sha256', sharedHub,
  Buffer.from('hikma-health-pairing-v1'), Buffer.concat([hubPub, clientPub]), 32));

const plaintexts = {
  command: '{"command":"sync_push","data":{"last_pulled_at":1767225600000,"changes":{}},"token":"t"}',
  query: '{"query":"sync_pull","params":{"lastPulledAt":0},"token":null}',
  command_response: '',
  query_response: '{"changes":{"patients":{"created":[{"id":"p1","given_name":"أحمد"}],"updated":[],"deleted":[]}},"timestamp":1767225600001}',
};

const hikma = Object.entries(plaintexts).map(([direction, plaintext]) => {
  const nonce = sha256('clinicsync test vector: nonce ' + direction).subarray(0, 12);
  return { direction, plaintext, nonce: hex(nonce), blob: gcmSeal(sessionKey, nonce, direction, Buffer.from(plaintext, 'utf8')) };
});

const c2s = Buffer.from(crypto.hkdfSync('sha256', sessionKey, Buffer.alloc(0), Buffer.from('clinicsync v1 c2s'), 32));
const s2c = Buffer.from(crypto.hkdfSync('sha256', sessionKey, Buffer.alloc(0), Buffer.from('clinicsync v1 s2c'), 32));
function counterNonce(n) {
  const b = Buffer.alloc(12);
  b.writeBigUInt64BE(BigInt(n), 4);
  return b;
}
const native = [
  ['client', 0, 'command', plaintexts.command],
  ['client', 1, 'query', plaintexts.query],
  ['client', 0x0102030405060708n, 'command', 'big counter 0x0102030405060708'],
  ['hub', 0, 'command_response', plaintexts.command_response],
  ['hub', 1, 'query_response', plaintexts.query_response],
].map(([sender, counter, direction, plaintext]) => ({
  sender, counter: String(counter), // decimal string: a uint64 does not fit a JS number
  direction, plaintext,
  blob: gcmSeal(sender === 'client' ? c2s : s2c, counterNonce(counter), direction, Buffer.from(plaintext, 'utf8')),
}));

process.stdout.write(JSON.stringify({
  generator: 'codec/testdata/envelope/gen.mjs, node ' + process.version,
  hub_private: hex(hubPrivRaw),
  hub_public: b64u(hubPub),
  client_private: hex(clientPrivRaw),
  client_public: b64u(clientPub),
  shared_secret: hex(sharedHub),
  session_key: hex(sessionKey),
  hikma,
  native_c2s_key: hex(c2s),
  native_s2c_key: hex(s2c),
  native,
}, null, 2) + '\n');
