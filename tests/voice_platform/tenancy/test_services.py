from __future__ import annotations

import pytest
from django.test import override_settings

from voice_platform.crypto import DecryptionError, decrypt_str, encrypt_str
from voice_platform.tenancy.services import (
    ApiKeyInvalid,
    TenantSuspended,
    api_key_authenticate,
    api_key_create,
    tenant_gemini_key,
    tenant_set_gemini_key,
)

pytestmark = pytest.mark.django_db


def test_encrypt_round_trip_and_not_plaintext():
    token = encrypt_str("secret-value")
    assert "secret-value" not in token
    assert decrypt_str(token) == "secret-value"


def test_decrypt_with_other_key_fails_clearly():
    token = encrypt_str("secret-value")
    from cryptography.fernet import Fernet

    with (
        override_settings(FIELD_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]),
        pytest.raises(DecryptionError),
    ):
        decrypt_str(token)


def test_encryption_key_rotation_keeps_old_ciphertexts_readable():
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        token = encrypt_str("v")
    with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
        assert decrypt_str(token) == "v"


def test_tenant_gemini_key_set_and_clear(alice):
    tenant_set_gemini_key(tenant=alice.tenant, api_key="k-1")
    assert tenant_gemini_key(tenant=alice.tenant) == "k-1"
    tenant_set_gemini_key(tenant=alice.tenant, api_key="")
    assert tenant_gemini_key(tenant=alice.tenant) == ""


def test_api_key_authenticate_outcomes(alice):
    issued = api_key_create(tenant=alice.tenant, name="x")
    assert api_key_authenticate(raw_key=issued.raw_key).pk == issued.api_key.pk
    with pytest.raises(ApiKeyInvalid):
        api_key_authenticate(raw_key=issued.raw_key + "x")
    with pytest.raises(ApiKeyInvalid):
        api_key_authenticate(raw_key="")
    alice.tenant.status = "suspended"
    alice.tenant.save()
    with pytest.raises(TenantSuspended):
        api_key_authenticate(raw_key=issued.raw_key)
