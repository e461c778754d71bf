"""ShuffleBits keys, files, published vectors, bit-exact round trips and the one-time PRF."""

import json
import os
import stat
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from invfeat import shufflebits as sb

VECTORS = json.loads((Path(__file__).parent / "data" / "shufflebits_vectors.json").read_text())
CASES = VECTORS["cases"]
# (dtype, exponent bits, mantissa bits)
FLOATS = [(jnp.float16, 5, 10), (jnp.bfloat16, 8, 7), (jnp.float32, 8, 23), (jnp.float64, 11, 52)]


def string_method(values: np.ndarray, index_array: list[int]) -> np.ndarray:
    """The published algorithm, written out independently of the package."""
    out = []
    for v in values.astype(np.uint32).view(np.int32):
        s = np.binary_repr(int(v), width=32)
        out.append(int("".join(s[i] for i in index_array), 2))
    return np.array(out, dtype=np.uint32)


def special_patterns(exp: int, man: int) -> np.ndarray:
    """±0, ±inf, NaNs with payloads, subnormals, extremes, 1.0 and a few random patterns."""
    n = 1 + exp + man
    sign, exp_mask, man_mask = 1 << (n - 1), ((1 << exp) - 1) << man, (1 << man) - 1
    one = ((1 << (exp - 1)) - 1) << man
    pats = [
        0,
        sign,
        exp_mask,
        sign | exp_mask,
        exp_mask | 1,
        exp_mask | (1 << (man - 1)),
        exp_mask | man_mask,
        sign | exp_mask | 0b101,
        1,
        man_mask,
        sign | 1,
        sign | man_mask,
        1 << man,
        exp_mask - 1,
        sign | (exp_mask - 1),
        one,
        sign | one,
        (1 << n) - 1,
    ]
    rng = np.random.default_rng(n)
    pats += [int(v) & ((1 << n) - 1) for v in rng.integers(0, 2**64 - 1, 30, dtype=np.uint64)]
    return np.array(pats, dtype=np.uint64)


def as_floats(pats: np.ndarray, dtype) -> np.ndarray:
    n = np.dtype(dtype).itemsize * 8
    return pats.astype(sb.UINT_BY_WIDTH[n]).view(np.dtype(dtype))


def bits_of(x) -> np.ndarray:
    x = np.asarray(x)
    return x.view(sb.UINT_BY_WIDTH[x.dtype.itemsize * 8])


# ----------------------------------------------------------------------------- published convention


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c['seed']}" for c in CASES])
def test_published_vectors(case):
    key = sb.Key.from_seed(case["seed"])
    assert key.to_index_array().tolist() == case["index_array"]
    assert sb.Key.from_index_array(case["index_array"]) == key
    plain = np.array(case["plain_uint32"], np.uint32)
    expected = np.array(case["encrypted_uint32"], np.uint32)
    assert np.array_equal(string_method(plain, case["index_array"]), expected)
    enc = sb.encrypt(plain.view(np.float32), key)
    assert np.array_equal(bits_of(enc), expected)
    assert np.array_equal(bits_of(sb.decrypt(expected.view(np.float32), key)), plain)
    assert np.array_equal(sb.published_string_encrypt(plain, case["index_array"]), expected)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype,exp,man", FLOATS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_round_trip_special_values(dtype, exp, man):
    with jax.enable_x64(dtype == jnp.float64):
        n = 1 + exp + man
        key = sb.Key.generate(n)
        x = as_floats(special_patterns(exp, man), dtype).reshape(2, -1)
        y = sb.encrypt(x, key)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert not np.array_equal(bits_of(y), bits_of(x))
        assert np.array_equal(bits_of(sb.decrypt(y, key)), bits_of(x))
        # encryption equals an independent per-bit permutation
        ia = key.to_index_array()
        src = n - 1 - ia[n - 1 - np.arange(n)]
        u, ref = bits_of(x).astype(np.uint64), np.zeros(x.shape, np.uint64)
        for j in range(n):
            ref |= ((u >> np.uint64(src[j])) & np.uint64(1)) << np.uint64(j)
        assert np.array_equal(bits_of(y).astype(np.uint64), ref)
        secret, nonces = sb.Secret.generate(), sb.fresh_nonces(x.shape[:-1])
        z = sb.encrypt(x, secret, nonces)
        assert z.shape == x.shape and z.dtype == x.dtype
        assert np.array_equal(bits_of(sb.decrypt(z, secret, nonces)), bits_of(x))


def test_width_and_type_errors():
    key32 = sb.Key.from_seed(0)
    with pytest.raises(ValueError, match="32 bits does not match float16"):
        sb.encrypt(jnp.zeros(3, jnp.float16), key32)
    with pytest.raises(TypeError, match="float arrays"):
        sb.encrypt(jnp.zeros(3, jnp.int32), key32)
    with pytest.raises(TypeError, match="jax_enable_x64"):
        sb.encrypt(np.zeros(3, np.float64), sb.Key.from_seed(0, bits=64))
    with pytest.raises(ValueError, match="takes no nonce"):
        sb.encrypt(jnp.zeros((2, 3)), key32, sb.fresh_nonces(2))
    with pytest.raises(ValueError, match="needs nonce"):
        sb.encrypt(jnp.zeros((2, 3)), sb.Secret.generate())
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        sb.encrypt(jnp.zeros((2, 3)), sb.Secret.generate(), sb.fresh_nonces(3))
    with pytest.raises(ValueError, match="got uint64"):  # jnp.asarray would truncate it
        sb.encrypt(jnp.zeros((2, 3)), sb.Secret.generate(), sb.fresh_nonces(2).astype(np.uint64))
    with pytest.raises(TypeError, match="Key or Secret"):
        sb.encrypt(jnp.zeros(3), [1, 2, 3])
    with pytest.raises(ValueError, match="not a permutation"):
        sb.Key.from_index_array([0] * 32)
    with pytest.raises(ValueError, match="bit positions"):
        sb.Key.from_index_array(list(range(31)))


# ----------------------------------------------------------------------------- key files


def perm_texts(key: sb.Key) -> list[str]:
    arr = key.to_index_array().tolist()
    return [str(arr), str(arr)[1:-1], json.dumps(arr)[1:-1], ",".join(map(str, arr))]


def test_key_save_load_and_secrecy(tmp_path):
    key = sb.Key.generate()
    path = tmp_path / "k.json"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sb.Key.load(path) == key and sb.load_key(path) == key
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert not any(p in text for p in perm_texts(key))
    with pytest.raises(FileExistsError):
        key.save(path)
    secret = sb.Secret.generate()
    spath = tmp_path / "s.json"
    secret.save(spath)
    assert stat.S_IMODE(spath.stat().st_mode) == 0o600
    assert sb.Secret.load(spath) == secret and secret != sb.Secret.generate()
    assert secret.words().tobytes().hex() not in repr(secret) + str(secret)
    with pytest.raises(sb.KeyFileError, match="one-time secret"):
        sb.Key.load(spath)
    with pytest.raises(sb.KeyFileError, match="static key"):
        sb.Secret.load(path)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)


def test_key_save_never_replaces_a_file_created_meanwhile(tmp_path, monkeypatch):
    """Another process creates the key file between save's existence check and its rename."""
    path = tmp_path / "k.json"
    fsync = os.fsync

    def fsync_then_race(fd):
        fsync(fd)
        path.write_text("the other process's key")

    monkeypatch.setattr(os, "fsync", fsync_then_race)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        sb.Key.generate().save(path)
    assert path.read_text() == "the other process's key"
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]


def test_key_save_syncs_the_key_and_then_its_folder(tmp_path, monkeypatch):
    """A saved key survives a machine crash: its bytes, then its name in the folder, reach disk."""
    synced, fsync = [], os.fsync

    def record(fd):
        is_folder = stat.S_ISDIR(os.fstat(fd).st_mode)
        synced.append(("folder" if is_folder else "file", (tmp_path / "k.json").exists()))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    sb.Secret.generate().save(tmp_path / "k.json")
    assert synced == [("file", False), ("folder", True)]


def test_fresh_nonces_shapes():
    assert sb.fresh_nonces(np.int64(3)).shape == (3, 3)  # e.g. a count from np.sum
    assert sb.fresh_nonces((2, np.int32(4))).shape == (2, 4, 3)
    assert sb.fresh_nonces(()).shape == (3,) and sb.fresh_nonces(0).dtype == np.uint32
    with pytest.raises(ValueError, match="non-negative"):
        sb.fresh_nonces((-2, -2))


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: {**d, "version": 99}, "unsupported key file version 99"),
        (lambda d: {**d, "bits": 24}, "bad key width"),
        (lambda d: {**d, "index_array": d["index_array"][:16]}, "bad key width"),
        (lambda d: {**d, "index_array": [0] + d["index_array"][1:-1] + [0]}, "not a permutation"),
        (lambda d: {**d, "format": "something"}, "not a invfeat-shufflebits key file"),
        (lambda d: {**d, "kind": "weird"}, "unknown key kind"),
    ],
)
def test_bad_key_files(tmp_path, mutate, message):
    key = sb.Key.generate()
    good = tmp_path / "good.json"
    key.save(good)
    bad = _write(tmp_path / "bad.json", json.dumps(mutate(json.loads(good.read_text()))))
    with pytest.raises(sb.KeyFileError, match=message) as err:
        sb.load_key(bad)
    assert str(bad) in str(err.value)
    assert not any(p in str(err.value) for p in perm_texts(key))


def test_corrupt_missing_and_exposed_key_files(tmp_path):
    key = sb.Key.generate()
    truncated = json.dumps({"format": sb.FILE_FORMAT, "version": 1, "index_array": []})[:-2]
    truncated += str(key.to_index_array().tolist())[:-1]  # most of a key, cut short
    with pytest.raises(sb.KeyFileError, match="corrupt") as err:
        sb.load_key(_write(tmp_path / "c.json", truncated))
    for chained in (err.value.__cause__, err.value.__context__):  # reachable despite `from None`
        assert chained is None or truncated not in str(vars(chained))
    with pytest.raises(sb.KeyFileError, match="corrupt secret"):
        sb.load_key(
            _write(
                tmp_path / "s.json",
                json.dumps(
                    {"format": sb.FILE_FORMAT, "version": 1, "kind": "secret", "secret": "zz"}
                ),
            )
        )
    with pytest.raises(sb.KeyFileError, match="cannot read"):
        sb.load_key(tmp_path / "missing.json")
    folder = tmp_path / "folder.json"
    folder.mkdir(mode=0o700)
    with pytest.raises(sb.KeyFileError, match="cannot read") as err:
        sb.load_key(folder)
    assert str(folder) in str(err.value)
    with pytest.raises(sb.KeyFileError, match="corrupt key file"):  # json: RecursionError
        sb.load_key(_write(tmp_path / "deep.json", "[" * 10_000))
    path = tmp_path / "k.json"
    sb.Key.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(sb.KeyFileError, match="chmod 600") as err:
        sb.load_key(path)
    assert str(path) in str(err.value)


# ----------------------------------------------------------------------------- one-time PRF


def test_chacha20_rfc8439_block():
    """RFC 8439 section 2.3.2 test vector."""
    key = np.frombuffer(bytes(range(32)), "<u4")
    nonce = np.frombuffer(bytes.fromhex("000000090000004a00000000"), "<u4")
    out = np.asarray(sb.chacha20_block(key, 1, nonce)).astype("<u4").tobytes()
    assert out.hex() == (
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    )


def test_chacha20_matches_cryptography():
    algorithms = pytest.importorskip("cryptography.hazmat.primitives.ciphers.algorithms")
    from cryptography.hazmat.primitives.ciphers import Cipher

    secret = sb.Secret.generate()
    nonces = sb.fresh_nonces(3)
    ours = np.asarray(sb.chacha20_block(secret.words(), 5, nonces)).astype("<u4")
    for nonce, block in zip(nonces, ours, strict=True):
        iv = np.uint32(5).astype("<u4").tobytes() + nonce.astype("<u4").tobytes()
        enc = Cipher(algorithms.ChaCha20(secret.words().astype("<u4").tobytes(), iv), None)
        assert enc.encryptor().update(bytes(64)) == block.tobytes()


def test_one_time_permutations():
    secret = sb.Secret.generate()
    nonces = sb.fresh_nonces(64)
    nonces[1] = nonces[0]
    perms = np.asarray(sb.one_time_permutation(secret, nonces, 32))
    assert all(sorted(p) == list(range(32)) for p in perms)
    assert np.array_equal(perms[0], perms[1])
    assert len({tuple(p) for p in perms[1:]}) == 63
    other = np.asarray(sb.one_time_permutation(sb.Secret.generate(), nonces, 32))
    assert not np.array_equal(perms, other)
    # every output position is fed by many different input positions across vectors
    assert min(len(set(perms[:, j])) for j in range(32)) >= 16

    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 16)), jnp.float32)
    n = nonces[:3]
    y = sb.encrypt(x, secret, n)
    assert np.array_equal(bits_of(sb.encrypt(x, secret, n)), bits_of(y))
    assert not np.array_equal(bits_of(sb.decrypt(y, secret, nonces[3:6])), bits_of(x))
    assert not np.array_equal(bits_of(sb.decrypt(y, sb.Secret.generate(), n)), bits_of(x))
    # two vectors with equal plaintext but distinct nonces encrypt differently
    same = jnp.broadcast_to(x[0], (2, 16))
    z = bits_of(sb.encrypt(same, secret, sb.fresh_nonces(2)))
    assert not np.array_equal(z[0], z[1])


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32], ids=["float16", "float32"])
def test_one_time_equals_numpy_per_vector_permutation(dtype):
    """Independent reference: ChaCha20 keystream (`cryptography`), stable argsort, bit by bit."""
    algorithms = pytest.importorskip("cryptography.hazmat.primitives.ciphers.algorithms")
    from cryptography.hazmat.primitives.ciphers import Cipher

    n = np.dtype(dtype).itemsize * 8
    uint = sb.UINT_BY_WIDTH[n]
    secret = sb.Secret.generate()
    nonces = sb.fresh_nonces(3)
    nonces[2] = [0, 0xFFFFFFFF, 7]
    u = np.random.default_rng(n).integers(0, 2**n, (3, 9), dtype=np.uint64).astype(uint)
    u[0, :4] = [0, (1 << n) - 1, 1, 1 << (n - 1)]
    expected = np.zeros_like(u)
    for v, nonce in enumerate(nonces):
        iv = bytes(4) + nonce.astype("<u4").tobytes()  # counter 0, then the 96-bit nonce
        stream = Cipher(algorithms.ChaCha20(secret.words().astype("<u4").tobytes(), iv), None)
        words = np.frombuffer(stream.encryptor().update(bytes(4 * n)), "<u4")
        src = np.argsort(words, kind="stable")  # output bit j takes input bit src[j]
        for j in range(n):
            expected[v] |= ((u[v] >> uint(src[j])) & uint(1)) << uint(j)
    y = sb.encrypt(u.view(dtype), secret, nonces)
    assert np.array_equal(bits_of(y), expected)
    assert np.array_equal(bits_of(sb.decrypt(y, secret, nonces)), u)


def _flip_hex_digit(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


@pytest.mark.parametrize("kind", ["key", "secret"])
def test_a_key_file_altered_into_another_valid_key_is_refused(tmp_path, kind):
    """One flipped hex digit of a secret, or two swapped positions of a key, is still a valid
    key: only the file's check tells it from the one written (it loaded silently before)."""
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    (sb.Key.generate() if kind == "key" else sb.Secret.generate()).save(good)
    data = json.loads(good.read_text())
    assert data["version"] == 2 and len(data["check"]) == 16
    if kind == "key":
        order = data["index_array"]
        order[0], order[1] = order[1], order[0]
    else:
        data["secret"] = _flip_hex_digit(data["secret"])
    _write(bad, json.dumps(data))
    with pytest.raises(sb.KeyFileError, match="check does not match") as err:
        sb.load_key(bad)
    assert str(bad) in str(err.value)
    del data["check"]
    with pytest.raises(sb.KeyFileError, match="check does not match"):
        sb.load_key(_write(bad, json.dumps(data)))


def test_version_1_key_files_without_a_check_still_load(tmp_path):
    secret = sb.Secret.generate()
    secret.save(tmp_path / "new.json")
    data = json.loads((tmp_path / "new.json").read_text())
    del data["check"]
    data["version"] = 1
    assert sb.load_key(_write(tmp_path / "old.json", json.dumps(data))) == secret
