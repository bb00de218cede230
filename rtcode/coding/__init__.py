"""Coding, after measuring: a pure function of facts and policy.

policy.py and sections.py (the file, validated; its typed sections), techniques.py
(each beam's delivery; what counts as modulated), rules.py, three_d.py and isodose.py
(one function per rule, returning its evidence), decisions.py (the ordered decision
table), classify.py (weighs every rule, then decides), related.py (codes beside the
planning code). Vendor and machine name matches live in rtcode/dicom/vendors.py."""
