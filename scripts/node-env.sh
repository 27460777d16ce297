# Sourced by the scripts: use the Node.js 20 that bootstrap put in /opt when the machine's own is too old.
node_ok() { command -v node >/dev/null && node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=5)?0:1)'; }
if ! node_ok && [ -x /opt/pipe2me-node/bin/node ]; then export PATH=/opt/pipe2me-node/bin:$PATH; fi
