-- Up Migration
-- Asymmetric signing keys (JWT_ALG=EdDSA). Kept here so every replica signs
-- with the same keys and they survive restarts. The private key is stored
-- encrypted (AES-256-GCM, key from SIGNING_KEY_SECRET or BETTER_AUTH_SECRET);
-- the public one is published at /.well-known/jwks.json from created_at until
-- its tokens have expired after retired_at. A key signs from activates_at
-- (published ahead, so verifiers know it first) until retired_at.
CREATE TABLE signing_keys (
  kid text PRIMARY KEY,
  alg text NOT NULL,
  public_jwk jsonb NOT NULL,
  private_jwk_enc text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  activates_at timestamptz NOT NULL,
  retired_at timestamptz NULL
);
CREATE INDEX signing_keys_activates_at_idx ON signing_keys (activates_at);
