// The dial string for a virtual number: "tel:+86" + the national number (no trunk 0, no separators), then
// "," (a pause) and the extension, which the phone sends as DTMF once the call is answered.
export function telHref(number, extension) {
  let digits = String(number).replace(/[^0-9+]/g, "");
  if (digits.startsWith("+86")) digits = digits.slice(3);
  else if (digits.startsWith("0086")) digits = digits.slice(4);
  else if (digits.startsWith("86") && digits.length === 13) digits = digits.slice(2);
  digits = digits.replace(/\+/g, "");
  if (digits.startsWith("0")) digits = digits.slice(1); // a landline's trunk prefix: not dialled after +86
  const ext = extension ? String(extension).replace(/[^0-9]/g, "") : "";
  return "tel:+86" + digits + (ext ? "," + ext : "");
}
