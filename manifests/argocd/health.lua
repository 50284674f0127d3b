-- Argo CD health check for Keelson's ControlPlane and DataPlane
-- (keelson.dev/v1alpha1). Argo CD runs it with the object as `obj`; it reads
-- the conditions Keelson writes by the kstatus conventions:
--   status.observedGeneration behind metadata.generation -> Progressing
--   Reconciling True (a copy of Progressing)              -> Progressing
--   Stalled True (a copy of Degraded)                     -> Degraded
--   Ready True                                            -> Healthy
--   anything else                                         -> Progressing
-- manifests/argocd/argocd-cm.yaml installs it for both kinds.
local hs = { status = "Progressing", message = "Waiting for Keelson to report status" }
if obj.status == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for Keelson to observe generation " .. tostring(generation)
  return hs
end
local conditions = {}
for _, c in ipairs(obj.status.conditions or {}) do
  conditions[c.type] = c
end
local function holds(type_)
  local c = conditions[type_]
  return c ~= nil and c.status == "True"
end
local function said(type_)
  local c = conditions[type_]
  return c.reason .. ": " .. (c.message or "")
end
if holds("Reconciling") then
  hs.message = said("Reconciling")
  return hs
end
if holds("Stalled") then
  return { status = "Degraded", message = said("Stalled") }
end
if holds("Ready") then
  return { status = "Healthy", message = said("Ready") }
end
if conditions.Ready ~= nil then
  hs.message = said("Ready")
end
return hs
