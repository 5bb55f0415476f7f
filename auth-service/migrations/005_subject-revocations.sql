-- Up Migration
-- Revocation by subject for any issuer: a row with not_before set and an
-- issuer revokes every token of that issuer's subject (user_id) issued at or
-- before not_before, e.g. a Better Auth app's user who signed out (its JWTs
-- carry no jti). NULL issuer: our own users (account deletion), as before.
ALTER TABLE revoked_tokens ADD COLUMN issuer text NULL;
