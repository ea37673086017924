// Validate one GLB with the Khronos glTF validator; prints its issues report as JSON.
// Usage: node validate_glb.js VALIDATOR_MODULE_DIR FILE.glb
const validator = require(process.argv[2]);
const fs = require("fs");
validator.validateBytes(new Uint8Array(fs.readFileSync(process.argv[3])))
  .then((report) => console.log(JSON.stringify(report.issues)))
  .catch((err) => { console.error(String(err)); process.exit(1); });
