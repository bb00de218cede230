"""Step 4, classify: the policy, the coding rules and the related codes. A pure function
of facts and policy."""
