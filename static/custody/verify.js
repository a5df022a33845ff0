// The public verification page: everything is checked here, in the visitor's
// browser, from what the server sends; nothing is taken on the server's word.
// The file is hashed locally and never uploaded.
"use strict";

// --- SHA-256 (FIPS 180-4), incremental: files of any size, a slice at a time ---
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

class Sha256 {
  constructor() {
    this.h = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                              0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.buffer = new Uint8Array(64);
    this.buffered = 0;
    this.length = 0;  // bytes, as a Number: exact up to 2^53
    this.w = new Int32Array(64);
  }

  update(bytes) {
    let i = 0;
    this.length += bytes.length;
    if (this.buffered) {
      const take = Math.min(64 - this.buffered, bytes.length);
      this.buffer.set(bytes.subarray(0, take), this.buffered);
      this.buffered += take;
      i = take;
      if (this.buffered < 64) return;
      this.block(this.buffer, 0);
      this.buffered = 0;
    }
    for (; i + 64 <= bytes.length; i += 64) this.block(bytes, i);
    if (i < bytes.length) {
      this.buffer.set(bytes.subarray(i), 0);
      this.buffered = bytes.length - i;
    }
  }

  block(data, offset) {
    const w = this.w, H = this.h;
    for (let t = 0; t < 16; t++) {
      const j = offset + 4 * t;
      w[t] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
    }
    for (let t = 16; t < 64; t++) {
      const x = w[t - 15], y = w[t - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
    }
    let a = H[0] | 0, b = H[1] | 0, c = H[2] | 0, d = H[3] | 0;
    let e = H[4] | 0, f = H[5] | 0, g = H[6] | 0, h = H[7] | 0;
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    H[0] = (H[0] + a) | 0; H[1] = (H[1] + b) | 0; H[2] = (H[2] + c) | 0; H[3] = (H[3] + d) | 0;
    H[4] = (H[4] + e) | 0; H[5] = (H[5] + f) | 0; H[6] = (H[6] + g) | 0; H[7] = (H[7] + h) | 0;
  }

  hex() {
    const bits = this.length * 8;
    const pad = new Uint8Array(((this.buffered < 56) ? 64 : 128) - this.buffered);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    view.setUint32(pad.length - 8, Math.floor(bits / 2 ** 32));
    view.setUint32(pad.length - 4, bits >>> 0);
    const length = this.length;
    this.update(pad);
    this.length = length;
    return Array.from(this.h, (x) => (x >>> 0).toString(16).padStart(8, "0")).join("");
  }
}

// Up to this size WebCrypto hashes the whole file at native speed; beyond
// it, the incremental hasher reads a slice at a time so memory stays flat.
const WHOLE_FILE_LIMIT = 256 * 1024 * 1024;

async function hashFile(file, progress) {
  if (file.size <= WHOLE_FILE_LIMIT && crypto.subtle) {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    progress(1);
    return hex(digest);
  }
  const hasher = new Sha256();
  const slice = 8 * 1024 * 1024;
  for (let offset = 0; offset < file.size; offset += slice) {
    const chunk = new Uint8Array(await file.slice(offset, offset + slice).arrayBuffer());
    hasher.update(chunk);
    progress(Math.min(1, (offset + chunk.length) / file.size));
  }
  progress(1);
  return hasher.hex();
}

// --- encodings and WebCrypto helpers ---
const enc = new TextEncoder();
const b64bytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const hex = (bytes) => Array.from(new Uint8Array(bytes), (x) => x.toString(16).padStart(2, "0")).join("");
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) { out.set(p, i); i += p.length; }
  return out;
};
const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

async function ed25519Verify(keyBytes, format, signature, message) {
  const key = await crypto.subtle.importKey(format, keyBytes, { name: "Ed25519" }, false, ["verify"]);
  return crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
}

function pemToDer(pem) {
  return b64bytes(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""));
}

// DSSE v1 pre-authentication encoding
function pae(type, payload) {
  const t = enc.encode(type);
  return concat(enc.encode(`DSSEv1 ${t.length} `), t, enc.encode(` ${payload.length} `), payload);
}

async function verifyEnvelope(envelope, keys) {
  const payload = b64bytes(envelope.payload);
  for (const s of envelope.signatures) {
    const key = keys.find((k) => k.keyid === s.keyid && k.purpose === "results");
    if (!key) continue;
    const ok = await ed25519Verify(pemToDer(key.public_key_pem), "spki", b64bytes(s.sig),
                                   pae(envelope.payloadType, payload));
    return { ok, key, payload };
  }
  return { ok: false, key: null, payload };
}

// C2SP signed note + tlog-checkpoint, checked against the published verifier key
async function verifyCheckpoint(note, vkey) {
  const [name, keyIdHex, keyB64] = splitVkey(vkey);
  const keyBytes = b64bytes(keyB64);
  if (keyBytes[0] !== 1 || keyBytes.length !== 33) throw new Error("the log key is not an Ed25519 note key");
  const split = note.lastIndexOf("\n\n");
  const body = note.slice(0, split + 1);
  const line = note.slice(split + 2).split("\n").find((l) => l.startsWith(`\u2014 ${name} `));
  if (!line) throw new Error("the checkpoint carries no signature by the log key");
  const sig = b64bytes(line.split(" ")[2]);
  if (hex(sig.slice(0, 4)) !== keyIdHex) throw new Error("the checkpoint's key id differs from the log key's");
  const ok = await ed25519Verify(keyBytes.slice(1), "raw", sig.slice(4), enc.encode(body));
  const [origin, size, root] = body.trimEnd().split("\n");
  return { ok, origin, size: Number(size), root: b64bytes(root) };
}

function splitVkey(vkey) {
  const first = vkey.indexOf("+");
  const second = vkey.indexOf("+", first + 1);
  return [vkey.slice(0, first), vkey.slice(first + 1, second), vkey.slice(second + 1)];
}

// RFC 9162 section 2.1.3.2
async function verifyInclusion(leafHash, index, size, proof, root) {
  if (index >= size) return false;
  let fn = index, sn = size - 1, r = leafHash;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(concat([1], p, r));
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await sha256(concat([1], r, p));
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(r, root);
}

// --- the page ---
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function check(ok, good, bad) {
  return el("li", { class: ok ? "pass" : "fail" }, (ok ? "\u2714 " : "\u2718 ") + (ok ? good : bad));
}

async function show(sha) {
  sha = sha.trim().toLowerCase().replace(/^sha256:/, "");
  const out = $("results");
  out.replaceChildren();
  if (!/^[0-9a-f]{64}$/.test(sha)) {
    out.append(el("p", { class: "fail" }, "A SHA-256 is 64 hexadecimal characters."));
    return;
  }
  $("hash").value = sha;
  const [resultsResponse, keysResponse] = await Promise.all([
    fetch(`/api/v1/public/results/?sha256=${sha}`), fetch("/api/v1/keys/"),
  ]);
  if (!resultsResponse.ok) {
    out.append(el("p", { class: "fail" }, `The server answered ${resultsResponse.status}; try again later.`));
    return;
  }
  const body = await resultsResponse.json();
  const keys = await keysResponse.json();
  out.append(el("p", {}, "SHA-256: ", el("code", { id: "checked-hash" }, sha)));
  if (!body.results.length) {
    out.append(el("p", { id: "no-results" },
      "No published result for this file. This says nothing either way about whether the server holds it: " +
      "results that were not published are never revealed, nor is their existence."));
    return;
  }
  const checkpoint = await verifyCheckpoint(body.checkpoint, keys.log_vkey);
  for (const result of body.results) out.append(await renderResult(result, sha, keys, checkpoint));
  out.append(witnessParagraph(body.witnesses));
  out.append(el("p", { class: "keynote" },
    "The signing keys come from this server (/api/v1/keys/). Compare the log key below with one published " +
    "elsewhere, or kept from an earlier visit, to rule out a server that swaps its keys:", el("br"),
    el("code", {}, keys.log_vkey)));
}

// Who cosigned the checkpoint shown (the server's account: the cosignature lines are in body.checkpoint).
function witnessParagraph(w) {
  if (!w || !w.configured) {
    return el("p", { class: "fail", id: "witnesses" },
      `Checkpoint of size ${w ? w.size : "?"}: no witnesses configured: the checkpoint rests on the server's log key alone.`);
  }
  const who = w.cosigned_by.map((c) => c.name).join(", ") || "none";
  return el("p", { class: w.final ? "pass" : "fail", id: "witnesses" },
    `Checkpoint of size ${w.size}: cosigned by ${w.cosigned} of ${w.configured} configured witnesses (${who}); ` +
    (w.final ? `final (quorum ${w.quorum} reached).` : `not final (quorum ${w.quorum} not reached).`));
}

async function renderResult(result, sha, keys, checkpoint) {
  const section = el("section", { class: "result" });
  const { ok: signatureOk, key, payload } = await verifyEnvelope(result.envelope, keys.keys);
  const statement = JSON.parse(new TextDecoder().decode(payload));
  const p = statement.predicate;
  const subjectOk = statement.subject.some((s) => s.digest.sha256 === sha);
  const statementSha = hex(await sha256(payload));
  const leaf = b64bytes(result.log.leaf);
  const entry = JSON.parse(new TextDecoder().decode(leaf));
  // The entry names the public statement (the internal one stays with the case).
  const entryOk = entry.action === "result.announced" && entry.details.public_statement_sha256 === statementSha &&
    entry.evidence && entry.evidence.sha256 === sha;
  const included = await verifyInclusion(await sha256(concat([0], leaf)), result.log.index, result.log.size,
                                         result.log.inclusion_proof.map(b64bytes), checkpoint.root);
  const sizeOk = result.log.size === checkpoint.size;
  section.append(el("h2", {}, `${p.analyzer.name} ${p.analyzer.version}`));
  section.append(el("p", {}, `Analysed ${p.started_at} to ${p.finished_at}; published ${entry.time}.`));
  const refs = Object.values(p.references || {});
  if (refs.length) {
    section.append(el("p", {}, "Also read: " + refs.map((r) => r.digest ? `${r.label} (SHA-256 ${r.digest.sha256})`
      : `${r.label} (not identified in the public result)`).join("; ") + "."));
  }
  section.append(el("ul", { class: "checks" },
    check(signatureOk, `Signature valid: signed by the results key ${key ? key.keyid.slice(0, 16) : ""}…`,
          "The signature does NOT verify: this result was altered or not signed by the server's results key."),
    check(subjectOk, "The signed statement is about exactly this file (its SHA-256).",
          "The signed statement is about other bytes than this file."),
    check(entryOk, `Its publication is log entry #${result.log.index}, which names this statement's SHA-256.`,
          "The log entry does not match this statement."),
    check(included && sizeOk && checkpoint.ok,
          `That entry is in the custody log: its inclusion proof leads to the root of the latest checkpoint ` +
          `(${checkpoint.size} entries), whose signature by the log key is valid.`,
          "The log inclusion proof or the checkpoint does NOT verify.")));
  const rows = p.findings.map((f) => el("tr", {},
    el("td", {}, f.name), el("td", {}, f.class),
    el("td", {}, f.artifact ? el("a", { href: `/api/v1/public/artifacts/${f.artifact.slice(7)}/` }, "picture")
                            : `${JSON.stringify(f.value)}${f.unit ? " " + f.unit : ""}`),
    el("td", {}, f.at ? `${f.at[0]}–${f.at[1]} s` : ""), el("td", {}, f.score ?? ""), el("td", {}, f.note || "")));
  section.append(el("table", { class: "findings" },
    el("thead", {}, el("tr", {}, ...["Finding", "Class", "Value", "Where", "Score", "Note"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows)));
  section.append(el("details", {}, el("summary", {}, "Limits of the method"),
    el("ul", {}, ...p.limits.map((l) => el("li", {}, l)))));
  section.append(el("details", { open: "" }, el("summary", {}, "What this proves, and what it does not"),
    el("p", {}, "It proves: the server's results key signed these findings about a file with exactly this SHA-256, " +
      "the signed text has not been changed since, and the publication was recorded in the append-only custody " +
      "log that the server cannot rewrite without breaking the signed checkpoints that monitors keep."),
    el("p", {}, "It does not prove: that the findings are right (read the method's limits), who made the " +
      "recording or whether it was edited before it reached the investigators, or that the server's keys are " +
      "honest (compare the log key with one published elsewhere).")));
  section.append(el("p", {}, el("a", { href: "data:application/json," + encodeURIComponent(JSON.stringify(result.envelope)),
    download: `published-result-${statementSha.slice(0, 16)}.dsse.json` }, "Download the signed result (DSSE envelope)")));
  return section;
}

function start() {
  const drop = $("drop");
  const pick = async (file) => {
    $("status").textContent = `Hashing ${file.name} (${file.size.toLocaleString()} bytes) in this browser…`;
    const sha = await hashFile(file, (f) => { $("progress").value = f; });
    $("status").textContent = `Hashed ${file.name} locally; it was not uploaded.`;
    await show(sha);
  };
  const report = (error) => { $("status").textContent = `Something went wrong: ${error.message || error}`; };
  $("file").addEventListener("change", (e) => e.target.files[0] && pick(e.target.files[0]).catch(report));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files[0]) pick(e.dataTransfer.files[0]).catch(report);
  });
  $("hash-form").addEventListener("submit", (e) => { e.preventDefault(); show($("hash").value).catch(report); });
  const fromUrl = new URLSearchParams(location.search).get("sha256");
  if (fromUrl) show(fromUrl).catch(report);
  if (!crypto.subtle) $("status").textContent = "This browser cannot check signatures here (no WebCrypto).";
}

window.custodyVerify = { Sha256, verifyInclusion, verifyCheckpoint, show };
document.addEventListener("DOMContentLoaded", start);
