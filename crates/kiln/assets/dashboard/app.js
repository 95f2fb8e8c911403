// Placeholder: shows the status JSON of the running `kiln up`.
'use strict';
fetch('/api/status').then((r) => r.json()).then((s) => {
  document.getElementById('status').textContent = JSON.stringify(s, null, 2);
});
