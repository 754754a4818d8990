"""Content Credentials: the step from `moderated` to `signed`, and verification of any file.

Modules: `pki` (signing identity, trust anchors, development PKI), `watermark` (invisible payload that
survives re-encoding), `manifest` (what the C2PA manifest states), `signing` (`sign_video`), `verify`
(`verify_file`), `resolution` (manifest recovery by soft binding or content). Heavy libraries (c2pa, av,
cv2) are imported inside the functions that use them.
"""
