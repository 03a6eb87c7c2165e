// The courier handheld app: log in, scan (camera) or type a label's token, see the courier view, call through
// the virtual number, sign off (pickup code, locker or station) or record a failed attempt. Everything goes
// through the service's /v1/ API on this origin; the page writes text only (never markup).
import { api, ApiError, describe } from "./api.js";
import { Scanner } from "./scanner.js";
import { telHref } from "./tel.js";

const $ = (id) => document.getElementById(id);

// The staff access token: in this variable only (never in a URL or in storage), so it ends with the tab.
let token = null;
let current = null; // the courier view of the shipment on screen

const REASONS = { not_home: "收件人不在", refused: "收件人拒收", address_problem: "地址有误", other: "其他原因" };
const METHODS = { handover: "当面签收", locker: "快递柜", station: "驿站" };
const STATUSES = {
  out_for_delivery: "派送中", delivered: "已签收", delivery_failed: "投递失败", returning: "退回中",
  returned: "已退回", in_transit: "运输中", printed: "已打印", created: "已下单",
};

function say(text, kind = "info", outcome = "") {
  const status = $("status");
  status.textContent = text;
  status.dataset.kind = kind;
  status.dataset.outcome = outcome;
}

function show(screen) {
  for (const id of ["screen-login", "screen-scan", "screen-view"]) $(id).hidden = id !== screen;
  $("logout").hidden = screen === "screen-login";
}

function markInvalid(field) {
  for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const id = { pickup_code: "pickup-code", locker_id: "locker-id", partner_id: "partner", token: "manual-token",
               reason: "attempt-reason", username: "username", password: "password" }[field];
  if (id) $(id).setAttribute("aria-invalid", "true");
}

// Every failed call ends here: the outcome in words, and a lost session back to the login screen.
function failed(err, context = "") {
  markInvalid(err instanceof ApiError ? err.field : null);
  if (err instanceof ApiError && err.status === 401 && context !== "login") {
    loggedOut();
    say("登录已失效，请重新登录", "error", "error:unauthenticated");
    return;
  }
  const text = context === "login" && err instanceof ApiError && err.status === 401
    ? "账号或密码不正确" : describe(err);
  say(text, "error", "error:" + (err instanceof ApiError ? err.code || err.status : "unexpected"));
}

async function busy(button, work) {
  button.disabled = true;
  try {
    await work();
  } finally {
    button.disabled = false;
  }
}

function loggedOut() {
  token = null;
  current = null;
  scanner.stop();
  $("camera-box").hidden = true;
  $("password").value = "";
  show("screen-login");
}

async function login(event) {
  event.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    say("请填写账号和密码", "error", "error:missing");
    return;
  }
  await busy($("login"), async () => {
    try {
      const answer = await api("POST", "/v1/auth/token", { body: { username, password } });
      if (answer.role !== "courier") {
        // Not a courier's account: drop the token at once, nothing on this page is for it.
        api("POST", "/v1/auth/logout", { token: answer.access_token }).catch(() => {});
        say("此账号不是快递员账号", "error", "error:not_courier");
        return;
      }
      token = answer.access_token;
      $("password").value = "";
      show("screen-scan");
      say("已登录，请扫描面单二维码", "info", "logged_in");
    } catch (err) {
      failed(err, "login");
    }
  });
}

async function logout() {
  const old = token;
  loggedOut();
  say("已退出登录", "info", "logged_out");
  if (old) api("POST", "/v1/auth/logout", { token: old }).catch(() => {});
}

// ---- scan or type a token ----

const scanner = new Scanner($("camera"), (found) => {
  $("camera-box").hidden = true;
  lookup(found);
}, () => {
  $("camera-box").hidden = true;
  say("无法识别二维码，请输入令牌", "error", "error:decoder");
});

async function startScan() {
  say("正在打开相机，把二维码对准方框", "info", "scanning");
  $("camera-box").hidden = false;
  try {
    await scanner.start();
  } catch {
    scanner.stop();
    $("camera-box").hidden = true;
    say("无法使用相机，请输入面单上的令牌", "error", "error:camera");
  }
}

function stopScan() {
  scanner.stop();
  $("camera-box").hidden = true;
  say("相机已关闭", "info", "scan_stopped");
}

async function manualLookup(event) {
  event.preventDefault();
  const typed = $("manual-token").value.trim();
  if (!typed) {
    markInvalid("token");
    say("请输入令牌", "error", "error:missing");
    return;
  }
  await busy($("lookup"), () => lookup(typed));
}

async function lookup(found) {
  say("正在查询…", "info", "looking_up");
  try {
    render(await api("POST", "/v1/courier/scan", { body: { token: found }, token }));
    $("manual-token").value = "";
    say("已找到运单 " + current.waybill_no, "info", "found");
  } catch (err) {
    failed(err);
  }
}

// ---- the courier view ----

function render(view) {
  current = view;
  const r = view.recipient;
  $("view-waybill").textContent = view.waybill_no;
  $("view-address").textContent = `${r.province}${r.city}${r.district}${r.address}`;
  $("view-recipient").textContent = `${r.name}　${r.phone}`;
  $("view-sorting").textContent = `${view.sorting_code} · ${STATUSES[view.status] || view.status}`;
  const call = $("call");
  call.removeAttribute("href");
  call.textContent = "获取隐私号";
  $("call-number").hidden = true;
  $("pickup-code").value = "";
  $("locker-id").value = "";
  $("method").value = "handover";
  methodChanged();
  show("screen-view");
}

async function getNumber(event) {
  const call = $("call");
  if (call.hasAttribute("href")) return; // the number is shown: the tap dials it
  event.preventDefault();
  if (!current || call.getAttribute("aria-disabled") === "true") return;
  call.setAttribute("aria-disabled", "true");
  try {
    const answer = await api("POST", `/v1/courier/shipments/${encodeURIComponent(current.shipment_id)}/call`,
                             { token });
    const ext = answer.extension;
    call.href = telHref(answer.virtual_number, ext);
    call.textContent = ext ? `拨打 ${answer.virtual_number} 转 ${ext}` : `拨打 ${answer.virtual_number}`;
    const note = $("call-number");
    note.textContent = ext
      ? `隐私号 ${answer.virtual_number}，分机号 ${ext}（拨通后自动输入）`
      : `隐私号 ${answer.virtual_number}`;
    note.hidden = false;
    say("隐私号已就绪，点击拨打", "info", "number_ready");
  } catch (err) {
    failed(err);
  } finally {
    call.removeAttribute("aria-disabled");
  }
}

// ---- sign-off ----

async function methodChanged() {
  const method = $("method").value;
  $("handover-fields").hidden = method !== "handover";
  $("partner-fields").hidden = method === "handover";
  $("locker-fields").hidden = method !== "locker";
  if (method !== "handover") await loadPartners(method);
}

async function loadPartners(kind) {
  const select = $("partner");
  const note = $("partner-note");
  select.replaceChildren();
  note.hidden = true;
  try {
    const answer = await api("GET", `/v1/partners?kind=${kind}`, { token });
    const today = new Date().toISOString().slice(0, 10);
    for (const p of (answer.items || []).filter((item) => item.active && item.kind === kind)) {
      const expired = Boolean(p.agreement_expires) && String(p.agreement_expires).slice(0, 10) < today;
      const option = new Option(expired ? `${p.name}（协议已过期）` : p.name, p.id);
      option.disabled = expired;
      select.append(option);
    }
    if (!select.options.length) {
      note.textContent = kind === "locker" ? "本站没有可用的快递柜" : "本站没有可用的驿站";
      note.hidden = false;
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      failed(err);
      return;
    }
    // The list is a convenience: without it the sign-off is refused by the service, not guessed here.
    note.textContent = "合作方列表暂时无法加载，请稍后重试";
    note.hidden = false;
  }
}

async function deliver(event) {
  event.preventDefault();
  if (!current) return;
  const method = $("method").value;
  const body = { method };
  if (method === "handover") body.pickup_code = $("pickup-code").value.trim();
  else body.partner_id = $("partner").value;
  if (method !== "handover" && !body.partner_id) {
    markInvalid("partner_id");
    say("请选择合作方", "error", "error:missing");
    return;
  }
  if (method === "locker") body.locker_id = $("locker-id").value.trim();
  await busy($("deliver"), async () => {
    try {
      const shipment = await api("POST", `/v1/courier/shipments/${encodeURIComponent(current.shipment_id)}/deliver`,
                                 { body, token });
      markInvalid(null);
      say(`已签收（${METHODS[method]}）：${shipment.waybill_no}`, "done", shipment.status);
      current = null;
      show("screen-scan");
    } catch (err) {
      failed(err);
    }
  });
}

async function attempt(event) {
  event.preventDefault();
  if (!current) return;
  const reason = $("attempt-reason").value;
  await busy($("attempt"), async () => {
    try {
      const shipment = await api("POST", `/v1/courier/shipments/${encodeURIComponent(current.shipment_id)}/attempt`,
                                 { body: { reason }, token });
      markInvalid(null);
      const status = STATUSES[shipment.status] || shipment.status;
      say(`已登记投递失败（${REASONS[reason]}）：${current.waybill_no}，${status}`, "done", shipment.status);
      current = null;
      show("screen-scan");
    } catch (err) {
      failed(err);
    }
  });
}

function next() {
  current = null;
  show("screen-scan");
  say("请扫描下一张面单", "info", "ready");
}

$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
$("scan").addEventListener("click", startScan);
$("scan-stop").addEventListener("click", stopScan);
$("manual-form").addEventListener("submit", manualLookup);
$("call").addEventListener("click", getNumber);
$("call").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") getNumber(e); });
$("method").addEventListener("change", methodChanged);
$("deliver-form").addEventListener("submit", deliver);
$("attempt-form").addEventListener("submit", attempt);
$("next").addEventListener("click", next);
// A phone put away with the camera on: switch it off (battery, and nobody films by mistake).
document.addEventListener("visibilitychange", () => {
  if (document.hidden && scanner.running) stopScan();
});
show("screen-login");
