-- An optional phone number per contact. Additive: the release before keeps working on it.
ALTER TABLE contacts ADD COLUMN phone TEXT;
