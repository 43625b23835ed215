"""Adapters: the only modules that import vendor SDKs. Each turns vendor errors into
``payments.errors`` types so nothing above them depends on a vendor."""
