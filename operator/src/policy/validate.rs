//! What the validating webhook refuses in policy objects.
