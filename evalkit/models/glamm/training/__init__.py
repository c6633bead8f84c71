"""Training the bundled tiny GLaMM (a tool run by hand; the runtime never imports it)."""
