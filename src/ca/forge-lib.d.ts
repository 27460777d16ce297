// node-forge's types describe only the package's index; these two files are its asn1 and util namespaces.
declare module 'node-forge/lib/asn1.js' {
  import type forge from 'node-forge';
  const asn1: typeof forge.asn1;
  export default asn1;
}
declare module 'node-forge/lib/util.js' {
  import type forge from 'node-forge';
  const util: typeof forge.util;
  export default util;
}
