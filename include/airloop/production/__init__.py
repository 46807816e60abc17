"""The production half: what served models were asked and answered, and what they should have said."""
