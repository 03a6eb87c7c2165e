// The service's JSON API, same origin. The staff access token is held by the caller (in memory only) and sent
// as a bearer header: never in a URL, never in storage.

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || code || String(status));
    this.status = status;
    this.code = code || "";
    this.field = field || null;
  }
}

export async function api(method, path, { body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = "Bearer " + token;
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
    });
  } catch {
    throw new ApiError(0, "network", "");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(response.status, err.code, err.message, err.field);
  }
  return data;
}

const FIELDS = {
  username: "账号", password: "密码", token: "令牌", pickup_code: "取件码", locker_id: "柜门号",
  partner_id: "合作方", method: "签收方式", reason: "失败原因",
};

const CODES = {
  pickup_locked: "取件码错误次数过多，当面签收已锁定：请联系调度重发取件码",
  partner_agreement_expired: "该合作方的协议已过期，不能投递到这里",
  invalid_status: "这票件当前的状态不能这样操作",
  rate_limited: "操作太频繁，请稍后再试",
  held: "该运单已被冻结，不能操作",
  no_available_number: "暂无可用的隐私号，请稍后再试",
  provider_error: "隐私号服务暂时不可用，请稍后再试",
};

// The outcome in words for the courier, from the API's status, error code and message.
export function describe(err) {
  if (!(err instanceof ApiError)) return "出现意外错误，请重试";
  if (err.status === 0) return "网络连接失败，请检查网络后重试";
  if (CODES[err.code]) return CODES[err.code];
  if (err.status === 401) return "登录已失效，请重新登录";
  if (err.status === 403) return "此账号无权进行该操作";
  if (err.status === 404) return "未找到或未分配给您";
  if (err.status === 422) {
    const name = FIELDS[err.field] || err.field;
    return name ? `${name}有误：${err.message}` : `填写有误：${err.message}`;
  }
  if (err.status === 409) return err.message ? `无法办理：${err.message}` : "无法办理：状态冲突";
  if (err.status === 429) return "操作太频繁，请稍后再试";
  if (err.status >= 500) return "服务暂时不可用，请稍后再试";
  return err.message || `请求失败（${err.status}）`;
}
